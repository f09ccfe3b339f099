"""The plugin interface every backend implements, in three lifetimes.

- `Backend`: one per framework, stateless metadata (platforms, file names) plus
  `complete_config` (fill a partial config from the model file) and `load`.
- `LoadedModel`: one per loaded model version; owns what instances share (weights, sessions).
- `BackendInstance`: one per instance in the model's `instance_group`; `execute` runs one
  batch and is called from that instance's own thread, never from the event loop.

A batch arrives stacked (input name -> array, batch axis first) with each request's row range,
id and parameters. A backend answers with stacked outputs (the scheduler splits them back per
request), or with one answer per request -- outputs or an error -- when requests differ.

A backend that can stream responses (a decoupled model, `model_transaction_policy
{ decoupled: true }`) sets the class attribute `supports_decoupled = True`; the loader refuses
a decoupled model on any other. Its instances send each request's responses to the
request's `responses` sink and answer each request with empty outputs (or an error).

A request's `cancelled` turns true while it runs when its client goes away (a cancelled call
or stream, a deadline passed, a disconnect); a backend may poll it to stop early.

A backend that can hand a request back for another step (an iterative sequence) sets
`supports_iterative = True` and marks such requests `rescheduled`.

A backend whose models can run without an input the config marks `optional: true` sets
`supports_optional_inputs = True`; the loader refuses such a config on any other.

A backend whose models can take a ragged batch (`allow_ragged_batch` inputs flattened into
one 1-D tensor, `batch_input` tensors added, `batch_output` scattered by the server) sets
`supports_ragged = True`; the loader refuses such a config on any other.

A backend instance whose `execute` may also be called from the event loop's thread sets
`runs_on_loop = True`: it never waits for the event loop (no call to another model), holds no
state bound to its thread (a CUDA stream, a thread-local session), and is safe to call from
another thread than its own. A model without batching may then run a short request there when
nothing else of it is in flight (scheduling/relay.py). ONNX Runtime on CPU sets it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from inferd.core.errors import InferdError
from inferd.core.model_config import ModelConfig
from inferd.core.responses import ResponseChannel
from inferd.core.types import Array, InferRequest, Parameters


class DeviceKind(enum.Enum):
    CPU = "cpu"
    GPU = "gpu"


@dataclass(frozen=True, slots=True)
class Device:
    """`node`: the cluster node that holds the device (an opaque id); "" on this machine."""

    kind: DeviceKind
    index: int = 0
    node: str = ""

    def __str__(self) -> str:
        return self.kind.value if self.kind is DeviceKind.CPU else f"{self.kind.value}:{self.index}"


class CancelSource(Protocol):
    """Whatever tells a running request's backend that its client went away (the engine's
    request; in a worker process, the worker's record of the server's cancellations)."""

    @property
    def cancelled(self) -> bool: ...


# Not frozen: one is built per request of every batch, and a frozen dataclass's __init__
# costs about 5x more.
@dataclass(slots=True)
class BatchRequest:
    """One request's share of a batch: rows [start, end) of every stacked input.

    `responses`: where a decoupled model sends this request's responses (else None).
    `origin`: what says whether the request was cancelled (read through `cancelled`).
    `rescheduled`: set by the backend when the model handed the request back for another
    step (an iterative sequence's, `sequence_batching { iterative_sequence: true }`).
    `ragged_shapes`: the request's own shape of each ragged input (`allow_ragged_batch`),
    which the batch holds flattened and concatenated in request order; None without any.
    `trace_id`: its trace in Triton's trace files (0: none), carried to another process (in
    the server, the engine's request holds it: read it with `traced_id`).
    """

    start: int
    end: int
    id: str = ""
    parameters: Parameters = field(default_factory=dict)
    responses: ResponseChannel | None = None
    origin: CancelSource | None = None
    rescheduled: bool = False
    ragged_shapes: dict[str, tuple[int, ...]] | None = None
    trace_id: int = 0

    def traced_id(self) -> int:
        """Its trace id in Triton's trace files (0: not traced there)."""
        origin = self.origin
        return origin.timestamps.trace_id if isinstance(origin, InferRequest) else self.trace_id

    @property
    def cancelled(self) -> bool:
        """The request's client went away: the model may stop working on it."""
        origin = self.origin
        return origin is not None and origin.cancelled

    def portable(self) -> BatchRequest:
        """What crosses to another process (a worker, a cluster host): rows, id and
        parameters, without what only lives here (the response channel, the engine's
        request)."""
        return BatchRequest(
            self.start,
            self.end,
            self.id,
            self.parameters,
            ragged_shapes=self.ragged_shapes,
            trace_id=self.traced_id(),
        )


# Stacked outputs for the whole batch, or one answer per request in the batch's order.
PerRequestOutputs = list[dict[str, Array] | InferdError]
BatchOutputs = dict[str, Array] | PerRequestOutputs


class BackendInstance(Protocol):
    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> BatchOutputs:
        """Run one batch: inputs have the batch axis first when the model batches."""

    def close(self) -> None:
        """Release what this instance holds alone."""


class LoadedModel(Protocol):
    def create_instance(self, device: Device, name: str) -> BackendInstance:
        """A new instance named `name` on `device`, sharing this model's weights where the
        framework allows."""

    def close(self) -> None:
        """Release everything the model holds; called after every instance is closed."""


class Backend(Protocol):
    name: str
    platforms: tuple[str, ...]
    default_model_filename: str

    def gpu_available(self) -> bool:
        """Whether this backend can place instances on a GPU in this process."""

    def matches(self, version_path: Path) -> bool:
        """Whether a version folder holds a model this backend can load (used when the config
        names neither backend nor platform)."""

    def complete_config(
        self, config: ModelConfig, version_path: Path, default_max_batch_size: int
    ) -> None:
        """Fill what a partial `ModelConfig` leaves out from the model file; check what it gives."""

    def load(self, config: ModelConfig, version_path: Path) -> LoadedModel:
        """Load a model version described by a complete, validated config."""
