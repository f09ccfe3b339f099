"""Triton's `pb_utils.InferenceRequest` (a request `execute` receives, or one a model sends to
another model with `exec`), `InferenceResponse` and `InferenceResponseSender`."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from inferd.backends.python import bls
from inferd.backends.python.error_codes import triton_code_of
from inferd.backends.python.triton_errors import TritonError, TritonModelException
from inferd.backends.python.triton_tensor import Tensor
from inferd.core.calls import ResponseStream
from inferd.core.errors import InferdError
from inferd.core.types import UNTRACED_PARENT, InferRequest, InferResponse, RequestedOutput

if TYPE_CHECKING:
    from inferd.backends.python.api import Request
    from inferd.backends.python.sender import ResponseSender

TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2
# The flag of a decoupled model's last response for a request (`sender.send(flags=...)`).
TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
# `request.set_release_flags(...)`: the request is done with, or handed back for another
# step of an iterative sequence (`sequence_batching { iterative_sequence: true }`).
TRITONSERVER_REQUEST_RELEASE_ALL = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE = 2

# Request parameters Triton's protocol consumes itself: a model sees them as `flags()`,
# `correlation_id()` and `timeout()`, not in `parameters()`.
_PROTOCOL_PARAMETERS = frozenset(
    {"sequence_id", "sequence_start", "sequence_end", "priority", "timeout", bls.BLS_CALLERS}
)


class InferenceRequest:
    """Made by a model to call another model (Triton's signature); `execute` receives
    requests made by inferd (`incoming`)."""

    def __init__(
        self,
        request_id: str = "",
        correlation_id: int | str = 0,
        inputs: Sequence[Tensor] = (),
        requested_output_names: Sequence[str] = (),
        model_name: str | bytes = "",
        model_version: int = -1,
        flags: int = 0,
        timeout: int = 0,
        preferred_memory: Any = None,
        trace: InferenceTrace | None = None,
        parameters: dict[str, Any] | str | None = None,
    ) -> None:
        if not isinstance(correlation_id, int | str):
            raise TritonModelException("Correlation ID must be integer or string")
        self._id = request_id
        self._correlation_id = correlation_id
        self._inputs = list(inputs)
        self._requested = list(requested_output_names)
        self._model_name = model_name.decode() if isinstance(model_name, bytes) else model_name
        self._model_version = model_version
        self._flags = flags
        self._timeout = timeout  # microseconds, 0: none
        given = json.loads(parameters) if isinstance(parameters, str) else (parameters or {})
        self._parameters: dict[str, Any] = dict(given)
        self._sender: InferenceResponseSender | None = None
        self._trace = trace  # the trace a call is a child of (None: its batch's)
        self._watched: Request | None = None  # the batch's request it stands for, if any
        self.release_flags = TRITONSERVER_REQUEST_RELEASE_ALL

    @classmethod
    def incoming(
        cls,
        inputs: Sequence[Tensor],
        requested_output_names: Sequence[str],
        request_id: str,
        parameters: dict[str, Any],
    ) -> InferenceRequest:
        """A request of the batch `execute` runs, from inferd's request parameters."""
        flags = TRITONSERVER_REQUEST_FLAG_SEQUENCE_START * bool(parameters.get("sequence_start"))
        flags |= TRITONSERVER_REQUEST_FLAG_SEQUENCE_END * bool(parameters.get("sequence_end"))
        sequence = parameters.get("sequence_id", 0)
        timeout = parameters.get("timeout", 0)
        return cls(
            request_id,
            sequence if isinstance(sequence, int | str) else 0,
            inputs,
            requested_output_names,
            flags=flags,
            timeout=timeout if isinstance(timeout, int) else 0,
            parameters={k: v for k, v in parameters.items() if k not in _PROTOCOL_PARAMETERS},
        )

    def attach_sender(self, sender: InferenceResponseSender) -> None:
        """Give the request of a decoupled model its response sender (done by inferd)."""
        self._sender = sender

    def watch(self, request: Request) -> None:
        """Give the request the batch's request it stands for, which `is_cancelled` and
        `trace` ask (done by inferd)."""
        self._watched = request

    def get_response_sender(self) -> InferenceResponseSender:
        if self._sender is None:
            raise TritonModelException(
                "a response sender is only available for a model whose config sets "
                "model_transaction_policy { decoupled: true }"
            )
        return self._sender

    def is_cancelled(self) -> bool:
        watched = self._watched
        return watched is not None and watched.is_cancelled()

    def trace(self) -> InferenceTrace:
        """The request's trace, for a call to continue (`trace=request.trace()`): in Triton's
        trace files the call is then this request's child, and not traced when this request
        is not. (A call made without `trace=` is the child of its batch's first traced request.)"""
        watched = self._watched
        return InferenceTrace(watched.trace_id() if watched is not None else 0)

    def set_release_flags(self, flags: int) -> None:
        """RESCHEDULE: run this request again in a later step (an iterative sequence's)."""
        self.release_flags = flags

    def correlation_id(self) -> int | str:
        """The request's sequence id (0: none); an iterative sequence's request gets one."""
        return self._correlation_id

    def flags(self) -> int:
        """TRITONSERVER_REQUEST_FLAG_SEQUENCE_START / _END of a sequence's request."""
        return self._flags

    def set_flags(self, flags: int) -> None:
        self._flags = flags

    def timeout(self) -> int:
        """Microseconds (0: none)."""
        return self._timeout

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def requested_output_names(self) -> list[str]:
        return self._requested

    def request_id(self) -> str:
        return self._id

    def parameters(self) -> str:
        """The request's own parameters as a JSON object."""
        return json.dumps(self._parameters)

    def model_name(self) -> str:
        return self._model_name

    # ---- BLS ----------------------------------------------------------------------------

    def exec(self, decoupled: bool = False) -> Any:
        """Call the model: its response (an error in it, never raised), or with `decoupled`
        an iterator of its responses."""
        if decoupled:
            return _ResponseIterator(self._engine_request())
        try:
            return _response(bls.infer(self._engine_request(), self._wait_s()))
        except InferdError as exc:
            return _error_response(exc)

    async def async_exec(self, decoupled: bool = False) -> Any:
        """`exec`, awaited in an `async def execute`."""
        if decoupled:
            # As Triton's: the iterator, once its first response came (awaited in a thread,
            # so that the model's event loop runs meanwhile).
            responses = _ResponseIterator(self._engine_request())
            await asyncio.to_thread(responses.read_ahead)
            return responses
        try:
            return _response(await bls.infer_async(self._engine_request(), self._wait_s()))
        except InferdError as exc:
            return _error_response(exc)

    def _wait_s(self) -> float | None:
        return self._timeout / 1e6 if self._timeout else None

    def _engine_request(self) -> InferRequest:
        parameters = dict(self._parameters)
        if self._correlation_id:
            parameters["sequence_id"] = self._correlation_id
            parameters["sequence_start"] = bool(
                self._flags & TRITONSERVER_REQUEST_FLAG_SEQUENCE_START
            )
            parameters["sequence_end"] = bool(self._flags & TRITONSERVER_REQUEST_FLAG_SEQUENCE_END)
        if self._timeout:
            parameters["timeout"] = self._timeout
        request = InferRequest(
            self._model_name,
            {tensor.name(): tensor.as_numpy() for tensor in self._inputs},
            "" if self._model_version < 0 else str(self._model_version),
            self._id,
            [RequestedOutput(name) for name in self._requested] or None,
            parameters,
        )
        if self._trace is not None:
            request.timestamps.parent_id = self._trace.trace_id or UNTRACED_PARENT
        return request


class InferenceTrace:
    """A request's trace (`request.trace()`), which a call made with `trace=` continues:
    in Triton's trace files the call is traced as its child, and not traced when the request
    is not."""

    def __init__(self, trace_id: int = 0) -> None:
        self.trace_id = trace_id

    def get_context(self) -> str | None:
        """Triton's OpenTelemetry context of the trace: none here (a call's span goes under
        its batch's traced request's span)."""
        return None


class InferenceResponse:
    def __init__(
        self,
        output_tensors: Sequence[Tensor] = (),
        error: TritonError | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        self._outputs = list(output_tensors)
        self._error = error
        # Most responses have none: "{}" without a trip through json (a BLS call's answer too).
        self._parameters = json.dumps(parameters) if parameters else "{}"

    def output_tensors(self) -> list[Tensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error

    def parameters(self) -> str:
        return self._parameters


def _response(response: InferResponse) -> InferenceResponse:
    return InferenceResponse([Tensor(name, array) for name, array in response.outputs.items()])


def _error_response(error: InferdError) -> InferenceResponse:
    return InferenceResponse(error=TritonError(error.message, triton_code_of(error.code)))


class _ResponseIterator:
    """Triton's `ResponseIterator`: the responses of a BLS call to a decoupled model; the last
    may carry no outputs (the final flag alone). A failed call yields one error response.
    `cancel()`, or dropping the iterator before its end, cancels the call."""

    def __init__(self, request: InferRequest) -> None:
        self._stream: ResponseStream | None = None
        self._ahead: list[InferenceResponse] = []  # read, not yet handed out
        try:
            self._stream = bls.stream(request)
        except InferdError as exc:
            self._ahead.append(_error_response(exc))

    def __iter__(self) -> Iterator[InferenceResponse]:
        return self

    def __next__(self) -> InferenceResponse:
        if self._ahead:
            return self._ahead.pop()
        if self._stream is None:
            raise StopIteration
        try:
            return _response(next(self._stream))
        except InferdError as exc:
            self._stream = None
            return _error_response(exc)

    def read_ahead(self) -> None:
        """Wait for the next response here, to be handed out by the next `__next__`."""
        with contextlib.suppress(StopIteration):
            self._ahead.append(next(self))

    def cancel(self) -> None:
        if self._stream is not None:
            self._stream.close()


class InferenceResponseSender:
    """Sends the responses of one request of a decoupled model, from any thread. A send after
    the request ended or was cancelled is dropped."""

    def __init__(
        self,
        sender: ResponseSender,
        answer: Callable[[InferenceResponse], dict[str, Any] | Exception],
    ) -> None:
        self._sender = sender
        self._answer = answer  # a response as outputs, or its error as an exception

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        final = bool(flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        if response is None:
            if not final:
                raise TritonModelException("send needs a response unless flags mark it final")
            self._sender.close()
            return
        answer = self._answer(response)
        if isinstance(answer, Exception):
            self._sender.send_error(answer)
        else:
            self._sender.send(answer, final=final)

    def is_cancelled(self) -> bool:
        return self._sender.is_cancelled()
