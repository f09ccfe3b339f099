"""A model's ragged inputs, `batch_input` and `batch_output` entries, read and checked once at
load (Triton's rules: one source input each, INT32 or FP32 batch inputs, known names).

Ragged inputs (`allow_ragged_batch`) reach the model flattened and concatenated over the
batch's requests; batch inputs are tensors the server adds to describe such a batch; batch
outputs are outputs the server scatters back by a source input's shape, not by rows. The
builders live in `scheduling/ragged.py`; backends read the names here (what the server feeds,
what it scatters) to check the model file and to hand a model its requests' own inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from inferd.core.errors import InvalidArgument, Unsupported
from inferd.core.model_config import ModelConfig, ModelInput, data_type_name

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import BatchInput

BATCH_ELEMENT_COUNT = "BATCH_ELEMENT_COUNT"
BATCH_ACCUMULATED_ELEMENT_COUNT = "BATCH_ACCUMULATED_ELEMENT_COUNT"
BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO = "BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO"
BATCH_MAX_ELEMENT_COUNT_AS_SHAPE = "BATCH_MAX_ELEMENT_COUNT_AS_SHAPE"
BATCH_ITEM_SHAPE = "BATCH_ITEM_SHAPE"
BATCH_ITEM_SHAPE_FLATTEN = "BATCH_ITEM_SHAPE_FLATTEN"
_DATA_TYPES = {"TYPE_INT32": "int32", "TYPE_FP32": "float32"}


@dataclass(frozen=True, slots=True)
class BatchInputSpec:
    """One `batch_input` entry: its kind's name, the inputs it feeds, numpy dtype, source."""

    kind: str
    targets: tuple[str, ...]
    dtype: str  # int32 or float32
    source: str


@dataclass(frozen=True, slots=True)
class ScatterSpec:
    """One output of a `BATCH_SCATTER_WITH_INPUT_SHAPE` entry: each request's part has the
    output's shape (batch axis first) with every -1 taken from the source input's shape."""

    source: str
    template: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class BatchIO:
    ragged: frozenset[str]  # inputs with allow_ragged_batch
    inputs: tuple[BatchInputSpec, ...]
    scattered: dict[str, ScatterSpec]  # output name -> how it is scattered

    @property
    def fed(self) -> tuple[str, ...]:
        """The model inputs the server adds (no client sends them)."""
        return tuple(target for spec in self.inputs for target in spec.targets)

    @classmethod
    def from_config(cls, config: ModelConfig) -> BatchIO | None:
        """The config's ragged batching, or None when it uses none; raises `InvalidArgument`
        for an entry Triton refuses too and `Unsupported` where inferd cannot serve it."""
        if not (config.batch_input or config.batch_output or _ragged_names(config)):
            return None
        if config.max_batch_size == 0:
            if config.batch_input or config.batch_output:
                raise Unsupported(
                    "batch_input and batch_output describe a batch of requests, but the model "
                    "has max_batch_size 0: set max_batch_size, or remove them"
                )
            return None  # allow_ragged_batch without a batch axis: nothing is ever batched
        if config.HasField("sequence_batching"):
            raise Unsupported(
                "allow_ragged_batch, batch_input and batch_output are served with "
                "dynamic_batching (or no scheduler), not with sequence_batching"
            )
        inputs = {t.name: t for t in config.input}
        specs = tuple(_batch_input(entry, inputs) for entry in config.batch_input)
        fed = [target for spec in specs for target in spec.targets]
        _check_fed(fed, inputs)
        scattered = _scattered(config, inputs)
        return cls(frozenset(_ragged_names(config)), specs, scattered)


def _ragged_names(config: ModelConfig) -> list[str]:
    return [t.name for t in config.input if t.allow_ragged_batch]


def _source(kind: str, sources: list[str], inputs: dict[str, ModelInput]) -> str:
    if len(sources) != 1:
        raise InvalidArgument(f"{kind} expects 1 source input, got {len(sources)}")
    source = sources[0]
    if source not in inputs:
        raise InvalidArgument(f"{kind}: unknown source input name '{source}'")
    if inputs[source].optional:
        # Its shape describes every request of the batch, so every request must bring it.
        raise InvalidArgument(f"{kind}: source input '{source}' cannot be optional")
    return source


def _batch_input(entry: BatchInput, inputs: dict[str, ModelInput]) -> BatchInputSpec:
    kind = entry.Kind.Name(entry.kind)
    source = _source(f"batch input kind '{kind}'", list(entry.source_input), inputs)
    dtype = _DATA_TYPES.get(data_type_name(entry.data_type))
    if dtype is None:
        raise InvalidArgument("batch input data type must be TYPE_INT32 or TYPE_FP32")
    if not entry.target_name:
        raise InvalidArgument(f"batch input kind '{kind}' names no target_name")
    return BatchInputSpec(kind, tuple(entry.target_name), dtype, source)


def _check_fed(fed: list[str], inputs: dict[str, ModelInput]) -> None:
    clashes = sorted({name for name in fed if name in inputs or fed.count(name) > 1})
    if clashes:
        raise InvalidArgument(
            f"batch_input target names {clashes} must be unique and differ from the config's "
            "inputs: the server feeds them, no client does"
        )


def _scattered(config: ModelConfig, inputs: dict[str, ModelInput]) -> dict[str, ScatterSpec]:
    outputs = {t.name: t for t in config.output}
    scattered: dict[str, ScatterSpec] = {}
    for entry in config.batch_output:
        kind = entry.Kind.Name(entry.kind)
        source = _source(f"batch output kind '{kind}'", list(entry.source_input), inputs)
        for name in entry.target_name:
            if name not in outputs:
                raise InvalidArgument(f"unknown target output name '{name}'")
            if name in scattered:
                raise InvalidArgument(f"target output name '{name}' can only be specified once")
            output = outputs[name]
            dims = output.reshape.shape if output.HasField("reshape") else output.dims
            template = (-1, *dims)
            source_rank = 1 + len(inputs[source].dims)
            if any(d == -1 for d in template[source_rank:]):
                raise InvalidArgument(
                    f"batch output '{name}' has a -1 dimension past the {source_rank} "
                    f"dimensions of its source input '{source}', which cannot give its size"
                )
            scattered[name] = ScatterSpec(source, template)
    return scattered
