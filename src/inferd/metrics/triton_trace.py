"""Triton's trace extension: request traces at a sampling rate, changeable at run time.

An `Observer` of finished requests and the server's `TraceControl`. Settings are global, and a
model may override any of them (its own sampling counter and trace count then apply to it).
With tracing off everywhere a request costs one attribute check here and one in the engine.

As in Triton, requests are sampled as they arrive, and a trace's id is taken then, so ids
follow arrival order. A request made by a traced one (an ensemble's step, a model's call) is
traced as its child (`parent_id`), in the parent's scope, whatever its own model's settings
say; made by one not traced, it is not traced (nor sampled on its own, as in Triton, where only
the frontends sample).

At level TENSORS the engine hands over the tensors of the traced requests (references, kept
while the request is in flight); they are written with their trace, off the event loop.
Triton's core records the same two activities: the inputs as the request is queued and the
outputs of each response.

`trace_mode` says where a scope's traces go: Triton's trace files (`triton`), or OpenTelemetry
spans (`opentelemetry`, offered when the server started in that mode), which `sample` decides
for as requests arrive. There, as in Triton, a request that carries a client's trace context
is traced whatever the rate and count, and `trace_rate` 0 traces only those.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from inferd.core.observer import FailureReason
from inferd.core.runtime_settings import TraceValues
from inferd.core.types import Array, Timestamps
from inferd.metrics.trace_output import TraceOutput, trace_marks
from inferd.metrics.trace_scope import Scope, sampled, write_out
from inferd.metrics.trace_settings import DEFAULTS, check_trace_scope, check_trace_setting
from inferd.metrics.trace_tensors import TracedTensor


class TritonTracer:
    """Traces requests as the trace settings say; `close` writes what is still collected."""

    def __init__(
        self, start: Mapping[str, list[str]] | None = None, opentelemetry: bool = False
    ) -> None:
        self._start = {
            **DEFAULTS,
            **{k: check_trace_setting(k, v) for k, v in (start or {}).items()},
        }
        self._opentelemetry = opentelemetry  # whether spans have somewhere to go
        check_trace_scope(self._start, opentelemetry)
        self._global_values = dict(self._start)
        self._model_values: dict[str, TraceValues] = {}
        self._outputs: dict[str, TraceOutput] = {}  # by trace_file
        self._global = self._scope(self._global_values, None)
        self._scopes: dict[str, Scope] = {}
        self._active = self._global.on and not self._global.spans
        self.traces_on = self._active
        # Whether any request may be traced as spans now: the one check on their path.
        self.spans_active = self._global.on and self._global.spans
        self.tensors_on = self._global.tensors
        # The traced requests in flight, by trace id: the scope that took each, its request id
        # and when it entered the engine (Triton's REQUEST_START).
        self._traced: dict[int, tuple[Scope, str, int]] = {}
        # Their tensors, by their timestamps' id.
        self._tensors: dict[int, list[TracedTensor]] = {}
        # Those that left the engine, until their frontend sent the answer (`Timestamps.sends`).
        self._sending: dict[int, _Held] = {}
        self._next_id = 1

    # ---- TraceControl ------------------------------------------------------------------------

    def trace_settings(self, model_name: str = "") -> TraceValues:
        scope = self._scopes.get(model_name, self._global) if model_name else self._global
        values = {key: list(values) for key, values in scope.values.items()}
        # As Triton answers it: the count left (0 once spent; -1: no limit).
        values["trace_count"] = [str(scope.remaining)]
        return values

    def update_trace_settings(
        self, model_name: str, changes: Mapping[str, list[str] | None]
    ) -> TraceValues:
        checked = {k: None if v is None else check_trace_setting(k, v) for k, v in changes.items()}
        # Changed on copies: a change refused for any scope changes nothing.
        global_values = dict(self._global_values)
        model_values = {name: dict(own) for name, own in self._model_values.items()}
        if model_name:
            own = model_values.setdefault(model_name, {})
            for key, values in checked.items():
                if values is None:
                    own.pop(key, None)
                else:
                    own[key] = values
            if not own:
                del model_values[model_name]
        else:
            for key, values in checked.items():
                global_values[key] = self._start[key] if values is None else values
        for own in (global_values, *({**global_values, **o} for o in model_values.values())):
            check_trace_scope(own, self._opentelemetry)
        self._global_values, self._model_values = global_values, model_values
        self._rebuild()
        scope = self._scopes.get(model_name) if model_name else self._global
        if "trace_count" in checked and scope is not None:
            # Set again (or cleared), a count starts over, as in Triton.
            scope.remaining, scope.seen = int(scope.values["trace_count"][0]), 0
        return self.trace_settings(model_name)

    # ---- Observer ----------------------------------------------------------------------------

    def model_versions_changed(self, model_name: str, versions: Sequence[str]) -> None:
        """Settings of a model outlive its loads, as Triton keeps them."""

    def request_arrived(self, model_name: str, timestamps: Timestamps, request_id: str) -> None:
        parent_id = timestamps.parent_id
        if parent_id:
            taken = self._traced.get(parent_id)  # none for UNTRACED_PARENT
            if taken is None:
                return
            scope = taken[0]
        else:
            scope = self._scopes.get(model_name, self._global)
            if not scope.on or scope.spans or not sampled(scope):
                return
        trace_id = timestamps.trace_id = self._next_id
        self._next_id = trace_id + 1
        scope.in_flight += 1
        self._traced[trace_id] = (scope, request_id, time.monotonic_ns())

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
        tensors = self._tensors.pop(id(timestamps), ()) if self._tensors else ()
        taken = self._traced.pop(timestamps.trace_id, None) if timestamps.trace_id else None
        if taken is None:
            return
        if not self._traced:
            self.traces_on = self._active
        if timestamps.sends and success:  # complete once its frontend sent the answer
            held = (timestamps, *taken, model_name, model_version, tensors)
            self._sending[timestamps.trace_id] = held
            return
        self._complete(timestamps, *taken, model_name, model_version, tensors)

    def request_sent(self, timestamps: Timestamps) -> None:
        held = self._sending.pop(timestamps.trace_id, None)
        if held is not None:
            self._complete(*held)

    def _complete(
        self,
        timestamps: Timestamps,
        scope: Scope,
        request_id: str,
        start: int,
        model_name: str,
        model_version: str,
        tensors: Sequence[TracedTensor],
    ) -> None:
        """The request's trace is complete: to its scope's output."""
        marks = trace_marks(timestamps, start) if scope.timestamps else ()
        trace = (
            timestamps.trace_id,
            timestamps.parent_id,
            request_id,
            model_name,
            model_version,
            marks,
            tensors,
        )
        scope.in_flight -= 1
        if not scope.output.trace_file:
            scope.output.log(trace)
            return
        scope.pending.append(trace)
        frequency = scope.log_frequency
        # As Triton writes them: every log_frequency traces; once the trace_count is spent and
        # its traces finished; once newer settings replaced the scope and its traces finished.
        if (frequency and len(scope.pending) >= frequency) or (
            not scope.in_flight and (scope.remaining == 0 or scope.retired)
        ):
            write_out(scope)

    def request_tensors(
        self,
        model_name: str,
        timestamps: Timestamps,
        activity: str,
        tensors: Mapping[str, Array],
    ) -> None:
        taken = self._traced.get(timestamps.trace_id) if timestamps.trace_id else None
        if taken is not None and taken[0].tensors:
            kept = self._tensors.setdefault(id(timestamps), [])
            kept.extend((activity, name, array) for name, array in tensors.items())

    def sample(self, model_name: str, propagated: bool) -> bool:
        """Whether a request for `model_name` arriving now is traced as spans; `propagated`:
        it carries a trace context (a client's, or the request that made it)."""
        scope = self._scopes.get(model_name, self._global)
        if not scope.on or not scope.spans:
            return False
        return propagated or sampled(scope)

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
        for held in self._sending.values():  # the server stops: as they are
            self._complete(*held)
        self._sending.clear()
        for scope in (self._global, *self._scopes.values()):
            write_out(scope)
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
        current = {id(s) for s in (self._global, *self._scopes.values())}
        for scope in old.values():
            if id(scope) not in current:
                scope.retired = True
                if not scope.in_flight:
                    write_out(scope)
        used = {id(s.output) for s in (self._global, *self._scopes.values())}
        for key, output in list(self._outputs.items()):
            if id(output) not in used:
                output.close()
                del self._outputs[key]
        scopes = [s for s in (self._global, *self._scopes.values()) if s.on]
        self._active = any(not s.spans for s in scopes)
        self.traces_on = self._active or bool(self._traced)
        self.spans_active = any(s.spans for s in scopes)
        self.tensors_on = any(s.tensors for s in scopes)

    def _reuse(self, scope: Scope | None, values: TraceValues) -> Scope:
        return scope if scope is not None and scope.values == values else self._scope(values, scope)

    def _scope(self, values: TraceValues, old: Scope | None) -> Scope:
        values = dict(values)  # a copy: the global settings change in place
        trace_file = values["trace_file"][0]
        output = self._outputs.get(trace_file)
        if output is None:
            output = self._outputs[trace_file] = TraceOutput(trace_file)
        count = int(values["trace_count"][0])
        if old is not None and old.values["trace_count"] == values["trace_count"]:
            count = old.remaining  # a change of another setting does not restart the count
        on = values["trace_level"] != ["OFF"]
        spans = values["trace_mode"] == ["opentelemetry"]
        rate, frequency = int(values["trace_rate"][0]), int(values["log_frequency"][0])
        return Scope(values, output, on, spans, rate, count, frequency)


# A trace that left the engine, held until its frontend sent the answer: what `_complete`
# takes (its marks, scope, request id, REQUEST_START, model, version and tensors).
_Held = tuple[Timestamps, Scope, str, int, str, str, Sequence[TracedTensor]]
