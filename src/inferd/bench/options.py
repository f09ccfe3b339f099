"""What one `inferd bench` run measures: parsed and validated before any connection is made."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from inferd.core.errors import InvalidArgument

Protocol = Literal["http", "grpc", "openai"]
LoadMode = Literal["concurrency", "request_rate"]
OpenAIRoute = Literal["completions", "chat"]

DEFAULT_PORTS: dict[Protocol, int] = {"http": 8000, "grpc": 8001, "openai": 8000}
DEFAULT_PROMPT = "Once upon a time"
DEFAULT_MAX_TOKENS = 16
DEFAULT_DURATION_S = 5.0
# A range longer than this is almost certainly a typo (e.g. an additive step meant to multiply).
MAX_STEPS = 1000


@dataclass(frozen=True, slots=True)
class LoadSteps:
    """The load levels to visit in order: concurrent requests, or requests per second."""

    mode: LoadMode
    values: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class BenchOptions:
    model: str
    url: str
    protocol: Protocol = "http"
    streaming: bool = False  # gRPC ModelStreamInfer, HTTP's generate_stream (SSE), or /v1
    openai_route: OpenAIRoute = "completions"  # with protocol "openai": which /v1 route
    prompt: str = DEFAULT_PROMPT  # with protocol "openai": the text every request sends
    max_tokens: int = DEFAULT_MAX_TOKENS  # with protocol "openai"
    model_version: str = ""
    steps: LoadSteps = LoadSteps("concurrency", (1.0,))
    batch_size: int = 1
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    input_data: str = "random"  # "random", "zero", or the path of a JSON file
    duration_s: float | None = DEFAULT_DURATION_S
    requests: int | None = None  # per step; when set, it replaces duration_s
    csv: Path | None = None
    json: Path | None = None
    plot: Path | None = None
    compare: tuple[Path, ...] = ()
    label: str = ""
    progress: bool = True

    def __post_init__(self) -> None:
        if self.streaming and self.protocol == "http" and self.batch_size != 1:
            raise InvalidArgument(
                "--streaming over HTTP (SSE) sends one sample per request:"
                " use --batch-size 1, or -i grpc"
            )
        if self.protocol == "openai":
            self._check_openai()

    def _check_openai(self) -> None:
        if not self.streaming:
            raise InvalidArgument("-i openai measures streams (stream: true): add --streaming")
        if self.batch_size != 1 or self.shapes or self.input_data != "random":
            raise InvalidArgument(
                "-i openai sends --prompt and --max-tokens, not tensors:"
                " --batch-size, --shape and --input-data do not apply"
            )
        if self.model_version:
            raise InvalidArgument("-i openai names no version (/v1 serves a model's default)")
        if self.max_tokens < 1:
            raise InvalidArgument("--max-tokens must be at least 1")

    @property
    def transport_name(self) -> str:
        """The protocol as the reports name it: `http`, `grpc`, `http sse`, `grpc stream`,
        `openai completions`, `openai chat`."""
        if self.protocol == "openai":
            return f"openai {self.openai_route}"
        if not self.streaming:
            return self.protocol
        return "http sse" if self.protocol == "http" else "grpc stream"

    @property
    def run_label(self) -> str:
        return self.label or f"{self.model} @ {self.url} ({self.transport_name})"


def parse_steps(text: str, integer: bool) -> tuple[float, ...]:
    """`V`, `START:END` or `START:END:STEP`; STEP adds (as in perf_analyzer), `xK` multiplies.

    `1:8:2` -> 1, 3, 5, 7 and `1:32:x2` -> 1, 2, 4, 8, 16, 32.
    """
    parts = text.split(":")
    if not 1 <= len(parts) <= 3:
        raise InvalidArgument(f"'{text}' is not V, START:END or START:END:STEP")
    start = _number(parts[0], text, integer)
    end = _number(parts[1], text, integer) if len(parts) > 1 else start
    step = parts[2] if len(parts) > 2 else "1"
    if start <= 0 or end < start:
        raise InvalidArgument(f"'{text}': need 0 < START <= END")
    multiply = step.startswith("x")
    amount = _number(step.removeprefix("x"), text, integer=False)
    if (multiply and amount <= 1) or amount <= 0:
        raise InvalidArgument(f"'{text}': STEP must be > 0 (or xK with K > 1)")
    values: list[float] = []
    value = start
    # A small tolerance keeps 0.1:0.3:0.1 from losing its last step to rounding.
    while value <= end * (1 + 1e-9):
        values.append(float(round(value)) if integer else value)
        if len(values) > MAX_STEPS:
            raise InvalidArgument(f"'{text}' gives more than {MAX_STEPS} steps")
        value = value * amount if multiply else value + amount
    return tuple(dict.fromkeys(values))  # integer rounding of xK steps may repeat a value


def _number(text: str, whole: str, integer: bool) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise InvalidArgument(f"'{whole}': '{text}' is not {kind}") from None
    if not math.isfinite(value):
        raise InvalidArgument(f"'{whole}': '{text}' is not finite")
    return float(value)


def parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """`NAME:d1,d2,...` -> (NAME, dims); dims exclude the batch axis of batching models."""
    name, sep, dims_text = text.rpartition(":")
    if not sep or not name:
        raise InvalidArgument(f"--shape '{text}' is not NAME:d1,d2,...")
    try:
        dims = tuple(int(dim) for dim in dims_text.split(",")) if dims_text else ()
    except ValueError:
        raise InvalidArgument(f"--shape '{text}': dims must be integers") from None
    if any(dim <= 0 for dim in dims):
        raise InvalidArgument(f"--shape '{text}': dims must be positive")
    return name, dims


def normalize_url(url: str | None, protocol: Protocol) -> str:
    """host:port as tritonclient wants it (no scheme); the protocol's default port if absent."""
    if not url:
        return f"localhost:{DEFAULT_PORTS[protocol]}"
    bare = url.split("://", 1)[-1].rstrip("/")
    if not bare:
        raise InvalidArgument(f"-u '{url}' names no host")
    return bare
