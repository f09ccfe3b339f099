"""Settings a client may change while the server runs: Triton's trace and logging extensions.

The frontends reach them through the engine (`Engine.controls`) and depend on neither
implementation: request tracing lives in `inferd.metrics.triton_trace`, logging in
`inferd.cli.log_control`. Both raise `InvalidArgument` for a setting or value they do not take.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

# Every trace setting has a list of values (only trace_level may hold more than one).
TraceValues = dict[str, list[str]]
LogValue = bool | int | str
LogValues = dict[str, LogValue]


class TraceControl(Protocol):
    def trace_settings(self, model_name: str = "") -> TraceValues:
        """The settings in force for `model_name` (its own, else the global ones), or the
        global ones."""

    def update_trace_settings(
        self, model_name: str, changes: Mapping[str, list[str] | None]
    ) -> TraceValues:
        """Change settings of `model_name` ("" = global); None clears one (a model's falls back
        to the global value, a global one to its start-up value). Returns the new settings."""


class LogControl(Protocol):
    def log_settings(self) -> LogValues:
        """log_file, log_info, log_warning, log_error, log_verbose_level, log_format."""

    def update_log_settings(self, changes: Mapping[str, LogValue]) -> LogValues:
        """Apply `changes` at once; returns the new settings."""


@dataclass(frozen=True, slots=True)
class RuntimeControls:
    """What this server lets clients change at run time (None: that extension is off)."""

    trace: TraceControl | None = None
    logging: LogControl | None = None


NO_CONTROLS = RuntimeControls()
