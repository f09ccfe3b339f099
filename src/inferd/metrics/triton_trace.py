"""Triton's trace extension: request traces at a sampling rate, changeable at run time.

An `Observer` of finished requests and the server's `TraceControl`. Settings are global, and a
model may override any of them (its own sampling counter and trace count then apply to it).
With tracing off everywhere a request costs one attribute check. `trace_level` TENSORS is
accepted and traces timestamps: request tensors are not recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from inferd.core.errors import InvalidArgument
from inferd.core.observer import FailureReason
from inferd.core.runtime_settings import TraceValues
from inferd.core.types import Timestamps
from inferd.metrics.trace_output import Trace, TraceOutput

LEVELS = ("OFF", "TIMESTAMPS", "TENSORS")
# Triton's defaults: off, 1 of 1000 requests, no limit, traces kept until the server stops.
DEFAULTS: TraceValues = {
    "trace_level": ["OFF"],
    "trace_rate": ["1000"],
    "trace_count": ["-1"],
    "log_frequency": ["0"],
    "trace_file": [""],
    "trace_mode": ["triton"],
}
_MINIMUM = {"trace_rate": 1, "trace_count": -1, "log_frequency": 0}


def check_trace_setting(key: str, values: Sequence[str]) -> list[str]:
    """The values of one setting, checked (raises `InvalidArgument` naming what is wrong)."""
    if key not in DEFAULTS:
        raise InvalidArgument(f"unknown trace setting '{key}' (known: {', '.join(DEFAULTS)})")
    values = [str(v) for v in values]
    if key == "trace_level":
        levels = [v.upper() for v in values]
        if not levels or any(v not in LEVELS for v in levels):
            raise InvalidArgument(f"trace_level takes {', '.join(LEVELS)}, not {values}")
        if "OFF" in levels and len(levels) > 1:
            raise InvalidArgument("trace_level OFF cannot be combined with other levels")
        return levels
    if len(values) != 1:
        raise InvalidArgument(f"trace setting '{key}' takes one value, not {values}")
    value = values[0]
    if key in _MINIMUM:
        try:
            number = int(value)
        except ValueError:
            raise InvalidArgument(f"trace setting '{key}' must be an integer: '{value}'") from None
        if number < _MINIMUM[key]:
            raise InvalidArgument(f"trace setting '{key}' must be >= {_MINIMUM[key]}: {number}")
        return [str(number)]
    if key == "trace_mode" and value != "triton":
        raise InvalidArgument(f"trace_mode '{value}' is not supported (triton only)")
    return [value]


def start_settings(items: Sequence[str]) -> TraceValues:
    """Settings from `--trace-config KEY=VALUE` flags (KEY with or without `trace_`: level,
    rate, count, log_frequency, file, mode; a repeated level adds a level)."""
    settings: TraceValues = {}
    for item in items:
        key, sep, value = item.partition("=")
        name = key if key in DEFAULTS else f"trace_{key}"
        if not sep or name not in DEFAULTS:
            raise InvalidArgument(f"--trace-config: '{item}' is not KEY=VALUE with a known KEY")
        previous = settings.get(name, []) if name == "trace_level" else []
        settings[name] = check_trace_setting(name, [*previous, value])
    return settings


@dataclass(slots=True)
class _Scope:
    """The settings in force globally or for one model, and its sampling state."""

    values: TraceValues
    output: TraceOutput
    on: bool
    rate: int
    remaining: int  # traces still allowed; -1: no limit
    seen: int = 0


class TritonTracer:
    """Traces requests as the trace settings say; `close` writes what is still collected."""

    def __init__(self, start: Mapping[str, list[str]] | None = None) -> None:
        self._start = {
            **DEFAULTS,
            **{k: check_trace_setting(k, v) for k, v in (start or {}).items()},
        }
        self._global_values = dict(self._start)
        self._model_values: dict[str, TraceValues] = {}
        self._outputs: dict[tuple[str, int], TraceOutput] = {}
        self._global = self._scope(self._global_values, None)
        self._scopes: dict[str, _Scope] = {}
        self._active = self._global.on
        self._next_id = 1

    # ---- TraceControl ------------------------------------------------------------------------

    def trace_settings(self, model_name: str = "") -> TraceValues:
        scope = self._scopes.get(model_name, self._global) if model_name else self._global
        return {key: list(values) for key, values in scope.values.items()}

    def update_trace_settings(
        self, model_name: str, changes: Mapping[str, list[str] | None]
    ) -> TraceValues:
        checked = {k: None if v is None else check_trace_setting(k, v) for k, v in changes.items()}
        if model_name:
            own = self._model_values.setdefault(model_name, {})
            for key, values in checked.items():
                if values is None:
                    own.pop(key, None)
                else:
                    own[key] = values
            if not own:
                del self._model_values[model_name]
        else:
            for key, values in checked.items():
                self._global_values[key] = self._start[key] if values is None else values
        self._rebuild()
        return self.trace_settings(model_name)

    # ---- Observer ----------------------------------------------------------------------------

    def model_versions_changed(self, model_name: str, versions: Sequence[str]) -> None:
        """Settings of a model outlive its loads, as Triton keeps them."""

    def request_finished(
        self,
        model_name: str,
        model_version: str,
        timestamps: Timestamps,
        success: bool,
        inferred_rows: int = 0,
        cancelled: bool = False,
        failure: FailureReason | None = None,
    ) -> None:
        if not self._active:
            return
        scope = self._scopes.get(model_name, self._global)
        if not scope.on or scope.remaining == 0:
            return
        scope.seen += 1
        if scope.seen % scope.rate:
            return
        if scope.remaining > 0:
            scope.remaining -= 1
        trace_id, self._next_id = self._next_id, self._next_id + 1
        scope.output.add(_trace(trace_id, model_name, model_version, timestamps))

    def batch_executed(
        self,
        model_name: str,
        model_version: str,
        batch_size: int,
        compute: Timestamps,
        instance: str = "",
        padding: int = 0,
    ) -> None:
        """A request's trace carries its batch's compute marks."""

    def version_load_finished(
        self, model_name: str, model_version: str, seconds: float, loaded: bool
    ) -> None:
        """Loads are not traced."""

    def close(self) -> None:
        for output in self._outputs.values():
            output.close()

    # ---- scopes ------------------------------------------------------------------------------

    def _rebuild(self) -> None:
        """Scopes for the new settings; one whose settings did not change keeps its state."""
        old = {"": self._global, **self._scopes}
        self._global = self._reuse(old.get(""), self._global_values)
        self._scopes = {
            name: self._reuse(old.get(name), {**self._global_values, **own})
            for name, own in self._model_values.items()
        }
        used = {id(s.output) for s in (self._global, *self._scopes.values())}
        for key, output in list(self._outputs.items()):
            if id(output) not in used:
                output.close()
                del self._outputs[key]
        self._active = any(s.on for s in (self._global, *self._scopes.values()))

    def _reuse(self, scope: _Scope | None, values: TraceValues) -> _Scope:
        return scope if scope is not None and scope.values == values else self._scope(values, scope)

    def _scope(self, values: TraceValues, old: _Scope | None) -> _Scope:
        values = dict(values)  # a copy: the global settings change in place
        key = (values["trace_file"][0], int(values["log_frequency"][0]))
        output = self._outputs.get(key)
        if output is None:
            output = self._outputs[key] = TraceOutput(*key)
        count = int(values["trace_count"][0])
        if old is not None and old.values["trace_count"] == values["trace_count"]:
            count = old.remaining  # a change of another setting does not restart the count
        return _Scope(
            values, output, values["trace_level"] != ["OFF"], int(values["trace_rate"][0]), count
        )


def _trace(trace_id: int, model_name: str, model_version: str, t: Timestamps) -> Trace:
    marks = (
        t.received,
        t.queued,
        t.compute_start,
        t.compute_input_end,
        t.compute_output_start,
        t.compute_end,
        t.sent,
    )
    return trace_id, model_name, model_version, marks
