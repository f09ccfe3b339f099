"""The types a user's `model.py` sees: the batch it executes, its requests, its context.

Duck typing works too: a model never has to import these, they only name what it receives.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inferd.backends.base import BatchRequest
from inferd.backends.python import bls
from inferd.backends.python.model_log import model_logger
from inferd.core.types import Array, InferRequest, RequestedOutput

if TYPE_CHECKING:
    from inferd.backends.base import CancelSource
    from inferd.backends.python.sender import ResponseSender


class InferenceError(Exception):
    """Raised (or returned in the list form) for a client-side error: HTTP 400 /
    INVALID_ARGUMENT. Any other exception is reported as a model error."""


@dataclass(slots=True)
class Request:
    """One request's share of a batch: `inputs` are views of rows [start, end) of the batch
    (a ragged input, `allow_ragged_batch`, in the request's own shape; see ragged_batching.md).

    `sender` sends its responses when the model is decoupled (None otherwise). `reschedule()`
    hands the request back for another step when the model is an iterative sequence's.
    `is_cancelled()` says whether its client went away; a model may poll it and stop.
    """

    inputs: dict[str, Array]
    start: int
    end: int
    id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    sender: ResponseSender | None = None
    rescheduled: bool = False
    origin: CancelSource | None = field(default=None, repr=False)  # set by inferd

    def is_cancelled(self) -> bool:
        """The client went away (a gRPC call cancelled or past its deadline, an HTTP client
        disconnected, a stream cancelled): whatever the model answers now is dropped."""
        if self.sender is not None:
            return self.sender.is_cancelled()
        origin = self.origin
        return origin is not None and origin.cancelled

    def trace_id(self) -> int:
        """Its trace id in Triton's trace files (0: not traced there)."""
        origin = self.origin
        return origin.traced_id() if isinstance(origin, BatchRequest) else 0

    def reschedule(self) -> None:
        """Not finished: run this request again in a later step (with `sequence_batching
        { iterative_sequence: true }`); its answer from this step is not its last."""
        self.rescheduled = True


@dataclass(slots=True)
class Batch:
    """Stacked inputs (batch axis first when the model batches), the outputs to produce, and
    the requests the rows belong to, in order."""

    inputs: dict[str, Array]
    output_names: list[str]
    requests: list[Request]


@dataclass(frozen=True, slots=True)
class ModelContext:
    """What `initialize` learns about the model and the instance it runs as."""

    model_name: str
    model_version: int
    model_dir: Path
    version_dir: Path
    config: dict[str, Any]  # the completed config in its JSON form
    parameters: dict[str, str]  # config `parameters`, string values
    instance_name: str
    device: str  # "cpu" | "gpu:0"
    device_kind: str  # "cpu" | "gpu"
    device_id: int

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, Any],
        outputs: Sequence[str] = (),
        version: str = "",
        parameters: Mapping[str, Any] | None = None,
    ) -> dict[str, Array]:
        """Call another model of this server (BLS) from `initialize`, `execute` or
        `finalize`, and await its outputs (those named in `outputs`, or all). Raises the
        call's `InferdError` (NotFound, InvalidArgument, ...): re-raised from `execute`, it
        reaches the client with its own status."""
        request = InferRequest(
            model,
            {name: np.asarray(value) for name, value in inputs.items()},
            version,
            outputs=[RequestedOutput(name) for name in outputs] or None,
            parameters=dict(parameters or {}),
        )
        return (await bls.infer_async(request)).outputs

    def logger(self) -> logging.Logger:
        """The model's logger: its lines reach the server's log named by the model."""
        return model_logger(self.model_name)
