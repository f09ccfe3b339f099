"""The plugin interface every backend implements, in three lifetimes.

- `Backend`: one per framework, stateless metadata (platforms, file names) plus
  `complete_config` (fill a partial config from the model file) and `load`.
- `LoadedModel`: one per loaded model version; owns what instances share (weights, sessions).
- `BackendInstance`: one per instance in the model's `instance_group`; `execute` runs one
  batch and is called from that instance's own thread, never from the event loop.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from inferd.core.types import Array


class DeviceKind(enum.Enum):
    CPU = "cpu"
    GPU = "gpu"


@dataclass(frozen=True, slots=True)
class Device:
    kind: DeviceKind
    index: int = 0

    def __str__(self) -> str:
        return self.kind.value if self.kind is DeviceKind.CPU else f"{self.kind.value}:{self.index}"


class BackendInstance(Protocol):
    def execute(self, inputs: Mapping[str, Array], output_names: Sequence[str]) -> dict[str, Array]:
        """Run one batch: inputs have the batch axis first when the model batches."""

    def close(self) -> None:
        """Release what this instance holds alone."""


class LoadedModel(Protocol):
    def create_instance(self, device: Device) -> BackendInstance:
        """A new instance on `device`, sharing this model's weights where the framework allows."""

    def close(self) -> None:
        """Release everything the model holds; called after every instance is closed."""


class Backend(Protocol):
    name: str
    platforms: tuple[str, ...]
    default_model_filename: str

    def gpu_available(self) -> bool:
        """Whether this backend can place instances on a GPU in this process."""

    def matches(self, version_path: Path) -> bool:
        """Whether a version folder holds a model this backend can load (used when the config
        names neither backend nor platform)."""

    def complete_config(self, config: Any, version_path: Path, default_max_batch_size: int) -> None:
        """Fill what a partial `ModelConfig` leaves out from the model file; check what it gives."""

    def load(self, config: Any, version_path: Path) -> LoadedModel:
        """Load a model version described by a complete, validated config."""
