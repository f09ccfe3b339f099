"""A Python model instance running in the server's process: one user object per instance,
executed in the instance's thread (an `async def execute` on an event loop of its own)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from inferd.backends.base import BatchOutputs, BatchRequest
from inferd.backends.python.answers import (
    OutputDtypes,
    as_inferd_error,
    make_batch,
    to_batch_outputs,
)
from inferd.backends.python.api import ModelContext
from inferd.backends.python.model_file import ModelFactory
from inferd.core.datatypes import numpy_dtype
from inferd.core.errors import InvalidArgument
from inferd.core.types import Array

logger = logging.getLogger(__name__)


class InProcessInstance:
    def __init__(
        self,
        factory: ModelFactory,
        context: ModelContext,
        output_datatypes: Mapping[str, str],
        batched: bool,
    ) -> None:
        """`output_datatypes`: V2 datatype of every output the model may be asked for."""
        self._context = context
        self._dtypes: OutputDtypes = {
            name: numpy_dtype(datatype) for name, datatype in output_datatypes.items()
        }
        self._batched = batched
        self._loop: asyncio.AbstractEventLoop | None = None
        try:
            self._model = factory()
            initialize = getattr(self._model, "initialize", None)
            if initialize is not None:
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
    ) -> BatchOutputs:
        batch = make_batch(inputs, output_names, requests, self._batched)
        try:
            result = self._wait(self._model.execute(batch))
        except Exception as exc:
            raise as_inferd_error(exc) from exc
        return to_batch_outputs(result, batch, self._dtypes, self._batched)

    def close(self) -> None:
        try:
            finalize = getattr(self._model, "finalize", None)
            if finalize is not None:
                self._wait(finalize())
        except Exception:
            logger.exception("finalize of %s failed", self._context.instance_name)
        finally:
            self._close_loop()

    def _wait(self, result: Any) -> Any:
        """The value itself, or what an awaitable (from an `async def` hook) resolves to."""
        if not inspect.isawaitable(result):
            return result
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(result)

    def _close_loop(self) -> None:
        if self._loop is not None:
            self._loop.close()
            self._loop = None
