"""The response sender of a decoupled Python model: one per request, usable from any thread
(the instance's, or the model's own), also after `execute` returned."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from inferd.backends.python.answers import OutputDtypes, as_inferd_error, convert_output
from inferd.core.errors import ModelExecutionError
from inferd.core.responses import ResponseSink
from inferd.core.types import Array


class ResponseSender:
    """Sends one request's responses: any number of `send(outputs)`, then the final flag
    (`send(outputs, final=True)` or `close()`); `send_error` fails the request and ends it.

    Each method returns False when the response was dropped: the request already ended, or
    the client cancelled it (`is_cancelled()`; a model may stop working on it then).
    """

    __slots__ = ("_dtypes", "_sink")

    def __init__(self, sink: ResponseSink, dtypes: OutputDtypes) -> None:
        self._sink = sink
        self._dtypes = dtypes

    def send(self, outputs: Mapping[str, Any] | None = None, final: bool = False) -> bool:
        """One response of any of the config's outputs (None: the final flag alone)."""
        converted = None if outputs is None else self._converted(outputs)
        return self._sink.send(converted, None, final)

    def send_error(self, error: str | BaseException) -> bool:
        """Fail the request, which ends it: an `InferenceError` is the client's fault, any
        other exception (or a bare message) the model's."""
        failure = ModelExecutionError(error) if isinstance(error, str) else as_inferd_error(error)
        return self._sink.send(None, failure, True)

    def close(self) -> bool:
        """Send the final flag alone: no more responses for this request."""
        return self._sink.send(None, None, True)

    def is_cancelled(self) -> bool:
        return self._sink.cancelled

    def sends_to(self, sink: ResponseSink) -> bool:
        """Whether it sends to `sink` (so a request's next step may keep it)."""
        return self._sink is sink

    def _converted(self, outputs: Mapping[str, Any]) -> dict[str, Array]:
        converted: dict[str, Array] = {}
        for name, value in outputs.items():
            dtype = self._dtypes.get(name)
            if dtype is None:
                raise ModelExecutionError(
                    f"the model sent output '{name}', which its config does not declare "
                    f"(outputs: {sorted(self._dtypes)})"
                )
            converted[name] = convert_output(name, np.asarray(value), dtype)
        return converted
