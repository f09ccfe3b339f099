"""A Python model instance running in the server's process: one user object per instance,
executed in the instance's thread (an `async def execute` on an event loop of its own).

A decoupled model gets a `ResponseSender` on each request and its `execute` answers nothing;
its event loop runs in a thread of its own, so tasks it starts keep sending after `execute`
returned.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import threading
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from inferd.backends.base import BatchOutputs, BatchRequest
from inferd.backends.python.answers import (
    OutputDtypes,
    as_inferd_error,
    make_batch,
    to_batch_outputs,
)
from inferd.backends.python.api import ModelContext
from inferd.backends.python.bls import BLS_CALLERS, callers_of, calls_parent, calls_trace
from inferd.backends.python.model_file import ModelFactory
from inferd.backends.python.model_scope import ModelScope, entered
from inferd.backends.python.sender import ResponseSender
from inferd.backends.python.step_requests import StepRequests
from inferd.core.batch_io import BatchIO
from inferd.core.calls import ModelCalls
from inferd.core.datatypes import numpy_dtype
from inferd.core.errors import Internal, InvalidArgument
from inferd.core.responses import ResponseSink
from inferd.core.types import Array

logger = logging.getLogger(__name__)


class InProcessInstance:
    def __init__(
        self,
        factory: ModelFactory,
        context: ModelContext,
        output_datatypes: Mapping[str, str],
        batched: bool,
        decoupled: bool = False,
        calls: ModelCalls | None = None,
        batch_io: BatchIO | None = None,
        iterative: bool = False,
    ) -> None:
        """`output_datatypes`: V2 datatype of every output the model may be asked for;
        `calls`: what the model's code uses to call other models (BLS); `batch_io`: the
        model's ragged batching, when it has any; `iterative`: the model runs iterative
        sequences (a request handed back keeps its `Request` for its next step)."""
        self._context = context
        self._scope = ModelScope(context.model_name, calls)
        self._dtypes: OutputDtypes = {
            name: numpy_dtype(datatype) for name, datatype in output_datatypes.items()
        }
        self._batched = batched
        self._batch_io = batch_io
        self._scattered = frozenset(batch_io.scattered) if batch_io is not None else frozenset()
        self._decoupled = decoupled
        self._steps = StepRequests() if iterative else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None  # a decoupled model's running loop
        try:
            self._model = factory()
            initialize = getattr(self._model, "initialize", None)
            if initialize is not None:
                with entered(self._scope):
                    self._wait(initialize(context))
        except Exception as exc:
            logger.error("initializing %s failed", context.instance_name, exc_info=exc)
            self._close_loop()
            raise InvalidArgument(
                f"initialize of instance {context.instance_name} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
        sinks: Sequence[ResponseSink | None] | None = None,
    ) -> BatchOutputs:
        """Run one batch; a decoupled model sends to `sinks` (default: the requests' own)."""
        batch = make_batch(
            inputs, output_names, requests, self._batched, self._batch_io, self._steps
        )
        if self._decoupled:
            for request, sink in zip(
                batch.requests, sinks or [r.responses for r in requests], strict=True
            ):
                if sink is None:
                    raise Internal("a request for a decoupled model came without its channel")
                sender = request.sender
                if sender is None or not sender.sends_to(sink):  # kept from its step before
                    request.sender = ResponseSender(sink, self._dtypes)
        try:
            with entered(self._batch_scope(requests)):
                result = self._wait(self._model.execute(batch))
        except Exception as exc:
            raise as_inferd_error(exc) from exc
        for part, described in zip(requests, batch.requests, strict=True):
            part.rescheduled = described.rescheduled
        if self._decoupled:  # its answers went through the senders
            return [{} for _ in requests]
        return to_batch_outputs(result, batch, self._dtypes, self._batched, self._scattered)

    def close(self) -> None:
        try:
            finalize = getattr(self._model, "finalize", None)
            if finalize is not None:
                with entered(self._scope):
                    self._wait(finalize())
        except Exception:
            logger.exception("finalize of %s failed", self._context.instance_name)
        finally:
            self._close_loop()

    def _batch_scope(self, requests: Sequence[BatchRequest]) -> ModelScope:
        """The model's scope, naming the models waiting on the batch's requests, and the span
        and the trace its calls continue."""
        callers = [
            name
            for r in requests
            if BLS_CALLERS in r.parameters
            for name in callers_of(r.parameters)
        ]
        parent = calls_parent(requests)
        trace_id = calls_trace(requests)
        if not callers and parent is None and not trace_id:
            return self._scope
        return dataclasses.replace(
            self._scope,
            callers=tuple(dict.fromkeys(callers)),
            trace_parent=parent,
            trace_id=trace_id,
        )

    def _wait(self, result: Any) -> Any:
        """The value itself, or what an awaitable (from an `async def` hook) resolves to."""
        if not inspect.isawaitable(result):
            return result
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            if self._decoupled:
                self._loop_thread = threading.Thread(
                    target=self._loop.run_forever,
                    name=f"{self._context.instance_name}-loop",
                    daemon=True,
                )
                self._loop_thread.start()
        if self._loop_thread is not None:
            return asyncio.run_coroutine_threadsafe(_awaited(result), self._loop).result()
        return self._loop.run_until_complete(result)

    def _close_loop(self) -> None:
        if self._loop is None:
            return
        if self._loop_thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join()
            self._loop_thread = None
        self._loop.close()
        self._loop = None


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
