"""What the engine and schedulers report as work flows through them.

Statistics, Prometheus metrics and tracing implement `Observer`; the engine calls every
registered observer and depends on none of them. Calls happen on the event loop and must
be cheap (counters, no I/O).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from inferd.core.errors import Cancelled, InstanceLost, ModelExecutionError, Unavailable
from inferd.core.types import Array, Timestamps

# Triton's trace activities of a request's tensors.
TENSOR_QUEUE_INPUT = "TENSOR_QUEUE_INPUT"  # its inputs as it entered its model's queue
TENSOR_BACKEND_OUTPUT = "TENSOR_BACKEND_OUTPUT"  # the outputs of each response sent


class FailureReason(enum.Enum):
    """Why a request failed, as Triton labels `nv_inference_request_failure`."""

    REJECTED = "REJECTED"  # not admitted or not scheduled: queue full, queue timeout, unloading
    CANCELED = "CANCELED"  # its client went away
    BACKEND = "BACKEND"  # the model or its instance failed while executing
    OTHER = "OTHER"  # anything else: an invalid request, a fault of the server


def failure_reason(exc: BaseException) -> FailureReason:
    """The reason a request that raised `exc` failed for."""
    if isinstance(exc, asyncio.CancelledError | Cancelled):
        return FailureReason.CANCELED
    if isinstance(exc, ModelExecutionError | InstanceLost):
        return FailureReason.BACKEND
    if isinstance(exc, Unavailable):
        return FailureReason.REJECTED
    return FailureReason.OTHER


class Observer(Protocol):
    def model_versions_changed(self, model_name: str, versions: Sequence[str]) -> None:
        """The versions of a model now serving (empty: none); called after every (un)load."""

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
        """One request left the engine, answered (`success`) or failed; `timestamps.sent` is set.

        `cancelled`: it failed because its client went away (as in Triton, a cancelled request
        counts as a failure, with the reason CANCELED). `failure`: why a failed one failed
        (None when the caller does not say: OTHER, or CANCELED when `cancelled`).

        `inferred_rows`: rows the request adds to its model's inference count by itself, for a
        model without executions that would count them (an ensemble, as in Triton); else 0.
        """

    def batch_executed(
        self,
        model_name: str,
        model_version: str,
        batch_size: int,
        compute: Timestamps,
        instance: str = "",
        padding: int = 0,
    ) -> None:
        """One execution ran on an instance (named `instance`); `batch_size` counts rows over
        all its requests, `padding` the rows without a request that the batch also held (the
        direct sequence batcher's empty slots below a busy one): as in Triton, the execution's
        batch size is their sum, its inference count `batch_size`.

        Only the four compute marks of `compute` are set; they are shared by every request
        of the batch.
        """

    def version_load_finished(
        self, model_name: str, model_version: str, seconds: float, loaded: bool
    ) -> None:
        """Loading one version took `seconds` and served it (`loaded`) or failed."""


@runtime_checkable
class TensorObserver(Protocol):
    """An observer that also traces requests as Triton's trace files do: it picks them as they
    arrive, and takes their tensors (trace level TENSORS)."""

    # Whether any request may be traced (or tensors are wanted) now: the engine checks each
    # per request, and calls nothing while it is off.
    traces_on: bool
    tensors_on: bool

    def request_arrived(self, model_name: str, timestamps: Timestamps, request_id: str) -> None:
        """A request entered the engine (`timestamps.received` is set): traced or not is
        decided now, so traces are numbered in arrival order (`timestamps.trace_id`)."""

    def request_tensors(
        self,
        model_name: str,
        timestamps: Timestamps,
        activity: str,
        tensors: Mapping[str, Array],
    ) -> None:
        """Tensors of one request, which its `timestamps` object stands for until the
        `request_finished` that ends it. The arrays are kept as they are, not copied."""

    def request_sent(self, timestamps: Timestamps) -> None:
        """The frontend sent (or failed to send) the answer of a traced request that said it
        would report it (`timestamps.sends`): the request's trace, held since it finished
        with success, is complete."""
