"""Which model's code is running here, and what it may use: its name (for its log lines), the
engine's calls (for BLS), and the models on the call chain of the batch it runs (so that a
model never waits for its own busy instance).

inferd enters a scope where it calls the model's hooks (`initialize`, `execute`, `finalize`;
carried to the tasks of an `async def execute`). A worker process serves one model only, so
its scope is also the default there, for threads the model starts itself.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

from inferd.core.calls import ModelCalls
from inferd.core.tracing import TraceParent


@dataclass(frozen=True, slots=True)
class ModelScope:
    model_name: str = ""
    calls: ModelCalls | None = None
    callers: tuple[str, ...] = ()  # the models waiting on the running batch, the closest last
    trace_parent: TraceParent | None = None  # the traced span its calls go under
    trace_id: int = 0  # the trace its calls are children of in Triton's trace files (0: none)


_current: contextvars.ContextVar[ModelScope] = contextvars.ContextVar("inferd_model_scope")
_default = ModelScope()


@contextlib.contextmanager
def entered(scope: ModelScope) -> Iterator[None]:
    token = _current.set(scope)
    try:
        yield
    finally:
        _current.reset(token)


def set_default(scope: ModelScope) -> None:
    global _default
    _default = scope


def current() -> ModelScope:
    return _current.get(_default)
