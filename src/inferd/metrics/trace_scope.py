"""One scope of Triton's trace settings (the global one, or a model's own): the settings in
force, its sampling state and the traces it collected, and how they are written out."""

from __future__ import annotations

from dataclasses import dataclass, field

from inferd.core.runtime_settings import TraceValues
from inferd.metrics.trace_output import Trace, TraceOutput


@dataclass(slots=True)
class Scope:
    """The settings in force globally or for one model, and its sampling state."""

    values: TraceValues
    output: TraceOutput
    on: bool
    spans: bool  # trace_mode opentelemetry
    rate: int
    remaining: int  # traces still allowed; -1: no limit
    log_frequency: int
    seen: int = 0
    # Its finished traces not written yet, its traces in flight, and whether newer settings
    # replaced it (it is written out once its last trace finished).
    pending: list[Trace] = field(default_factory=list)
    in_flight: int = 0
    retired: bool = False
    timestamps: bool = field(init=False)
    tensors: bool = field(init=False)

    def __post_init__(self) -> None:
        self.timestamps = "TIMESTAMPS" in self.values["trace_level"]
        # Spans carry no tensors (nor do Triton's).
        self.tensors = "TENSORS" in self.values["trace_level"] and not self.spans


def sampled(scope: Scope) -> bool:
    """Whether the scope's sampling takes the request that arrives now (and counts it)."""
    if scope.remaining == 0 or not scope.rate:
        return False
    scope.seen += 1
    if scope.seen % scope.rate:
        return False
    if scope.remaining > 0:
        scope.remaining -= 1
    return True


def write_out(scope: Scope) -> None:
    """Write the scope's pending traces: to the next indexed file where Triton writes them there
    (log_frequency set, or the trace_count spent), else to the trace file itself."""
    taken, scope.pending = scope.pending, []
    if not taken:
        return
    if scope.log_frequency or scope.remaining == 0:
        scope.output.to_index(taken)
    else:
        scope.output.to_file(taken)
