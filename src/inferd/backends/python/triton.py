"""Run a Triton-style `TritonPythonModel` as an inferd model: the batch is cut back into one
`InferenceRequest` per request, and its `InferenceResponse`s become the per-request answers."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable
from typing import Any

from inferd.backends.python import triton_utils as pb_utils
from inferd.backends.python.api import Batch, ModelContext, Request
from inferd.backends.python.triton_errors import returned_error


def triton_args(context: ModelContext) -> dict[str, str]:
    """What Triton passes to `initialize(args)`, from inferd's context."""
    return {
        "model_config": json.dumps(context.config),
        "model_instance_kind": context.device_kind.upper(),
        "model_instance_name": context.instance_name,
        "model_instance_device_id": str(context.device_id),
        "model_repository": str(context.model_dir),
        "model_version": str(context.model_version),
        "model_name": context.model_name,
    }


Answers = list[dict[str, Any] | Exception | None] | None


class TritonModelAdapter:
    def __init__(self, model: Any) -> None:
        self._model = model

    def initialize(self, context: ModelContext) -> None:
        initialize = getattr(self._model, "initialize", None)
        if initialize is not None:
            initialize(triton_args(context))

    def execute(self, batch: Batch) -> Answers | Awaitable[Answers]:
        """The answers; for an `async def execute`, what awaits them (run by the instance)."""
        requests = [_request(r, batch.output_names) for r in batch.requests]
        responses = self._model.execute(requests)
        if inspect.isawaitable(responses):
            return _answered_later(responses, batch, requests)
        return _answers(responses, batch, requests)

    def finalize(self) -> None:
        finalize = getattr(self._model, "finalize", None)
        if finalize is not None:
            finalize()


async def _answered_later(
    responses: Awaitable[Any], batch: Batch, requests: list[pb_utils.InferenceRequest]
) -> Answers:
    return _answers(await responses, batch, requests)


def _answers(responses: Any, batch: Batch, requests: list[pb_utils.InferenceRequest]) -> Answers:
    for request, triton_request in zip(batch.requests, requests, strict=True):
        flags = triton_request.release_flags
        if flags & pb_utils.TRITONSERVER_REQUEST_RELEASE_RESCHEDULE:
            request.reschedule()
    if responses is None and batch.requests and batch.requests[0].sender is not None:
        return None  # decoupled: the model answers through its response senders
    if not isinstance(responses, list | tuple):
        raise TypeError(f"execute returned {type(responses).__name__}, not a list of responses")
    # A rescheduled request's place holds None (as in Triton): its answer comes later.
    return [None if response is None else _answer(response) for response in responses]


def _request(request: Request, output_names: list[str]) -> pb_utils.InferenceRequest:
    tensors = [pb_utils.Tensor(name, array) for name, array in request.inputs.items()]
    triton_request = pb_utils.InferenceRequest.incoming(
        tensors, output_names, request.id, request.parameters
    )
    triton_request.watch(request)
    if request.sender is not None:
        triton_request.attach_sender(pb_utils.InferenceResponseSender(request.sender, _answer))
    return triton_request


def _answer(response: Any) -> dict[str, Any] | Exception:
    error = response.error()
    if error is not None:
        return returned_error(error)
    return {tensor.name(): tensor.as_numpy() for tensor in response.output_tensors()}
