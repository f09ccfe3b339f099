"""The engine's data types as its callers see them: its settings, and what its queries answer
(model states, each with its reason, as in Triton's repository index; model metadata)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from inferd.engine.control import ControlMode
from inferd.engine.response_cache import ResponseCache
from inferd.instances.placement import InProcessPlacer, InstancePlacer
from inferd.repository.store import ModelRepository
from inferd.scheduling.rate_limiter import RateLimiter


@dataclass(frozen=True, slots=True)
class LoadOptions:
    default_max_batch_size: int = 4
    auto_complete_config: bool = True
    # Where instances run: in this process, or on a cluster's nodes (`inferd.cluster`).
    placer: InstancePlacer = field(default_factory=InProcessPlacer)
    # Shared by every model's instances when `--rate-limit execution_count`; None: off.
    rate_limiter: RateLimiter | None = None


@dataclass(frozen=True, slots=True)
class EngineSettings:
    repository: Path | ModelRepository  # a folder, or any repository (in object storage)
    load: LoadOptions = field(default_factory=LoadOptions)
    # Triton's --strict-readiness: the server is ready only when every model asked for is.
    strict_readiness: bool = True
    control_mode: ControlMode = ControlMode.NONE
    startup_models: tuple[str, ...] = ()  # explicit mode: loaded at start ("*" = all)
    poll_interval_s: float = 15.0
    # The most bytes of model files a load request may carry; None refuses such files.
    model_files_max_bytes: int | None = None
    # The server's response cache (--cache-config); None: no model caches.
    response_cache: ResponseCache | None = None


class ModelState(enum.Enum):
    UNKNOWN = "UNKNOWN"
    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class VersionStatus:
    """One row of the repository index."""

    name: str
    version: str
    state: ModelState
    reason: str = ""


@dataclass(frozen=True, slots=True)
class TensorMetadata:
    name: str
    datatype: str
    shape: list[int]


@dataclass(frozen=True, slots=True)
class InstanceMetadata:
    name: str
    kind: str  # KIND_CPU | KIND_GPU, as the config names it
    device: str  # "cpu", "gpu:0"


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    instances: list[InstanceMetadata] = field(default_factory=list)
