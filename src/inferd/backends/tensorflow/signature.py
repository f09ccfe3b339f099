"""A SavedModel's signatures, read from `saved_model.pb` without restoring any variables.

The signature is chosen by the config parameter Triton uses, `TF_SIGNATURE_DEF` (default
`serving_default`); its input and output names are the signature's keys, as in Triton.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferd.backends.autocomplete import ModelTensor, check_names
from inferd.backends.tensorflow.framework import tensorflow
from inferd.core.errors import InvalidArgument
from inferd.core.model_config import ModelConfig, data_type_name, string_parameter

SIGNATURE_PARAMETER = "TF_SIGNATURE_DEF"
DEFAULT_SIGNATURE = "serving_default"
# The meta graph TF2's tf.saved_model.save writes, and the one Triton serves by default.
_SERVING_TAG = "serve"

_CONFIG_TYPE_BY_TF = {
    "DT_BOOL": "TYPE_BOOL",
    "DT_UINT8": "TYPE_UINT8",
    "DT_UINT16": "TYPE_UINT16",
    "DT_UINT32": "TYPE_UINT32",
    "DT_UINT64": "TYPE_UINT64",
    "DT_INT8": "TYPE_INT8",
    "DT_INT16": "TYPE_INT16",
    "DT_INT32": "TYPE_INT32",
    "DT_INT64": "TYPE_INT64",
    "DT_HALF": "TYPE_FP16",
    "DT_BFLOAT16": "TYPE_BF16",
    "DT_FLOAT": "TYPE_FP32",
    "DT_DOUBLE": "TYPE_FP64",
    "DT_STRING": "TYPE_STRING",
}


@dataclass(frozen=True, slots=True)
class Signature:
    key: str
    tags: tuple[str, ...]  # of the meta graph holding it, which `tf.saved_model.load` needs
    inputs: tuple[ModelTensor, ...]  # ordered by key
    outputs: tuple[ModelTensor, ...]
    unknown_rank: frozenset[str]  # tensors whose rank the signature leaves open

    @property
    def description(self) -> str:
        return f"the SavedModel signature '{self.key}'"


def signature_key(config: ModelConfig) -> str:
    return string_parameter(config, SIGNATURE_PARAMETER) or DEFAULT_SIGNATURE


def read_signature(saved_model: Path, key: str) -> Signature:
    """Signature `key` of the SavedModel folder `saved_model`; `InvalidArgument` if absent."""
    tensorflow()  # sets TF's environment before the proto modules below import TF
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((saved_model / "saved_model.pb").read_bytes())
    except (OSError, DecodeError) as exc:
        raise InvalidArgument(f"cannot read SavedModel '{saved_model.name}': {exc}") from exc
    graph = next((g for g in proto.meta_graphs if _SERVING_TAG in g.meta_info_def.tags), None)
    if graph is None:
        raise InvalidArgument(f"SavedModel '{saved_model.name}' has no '{_SERVING_TAG}' graph")
    # Keys starting with "__" are TF's own (e.g. "__saved_model_init_op"), not servable.
    available = sorted(k for k in graph.signature_def if not k.startswith("__"))
    if key not in available:
        raise InvalidArgument(
            f"SavedModel '{saved_model.name}' has no signature '{key}'; its signatures are "
            f"{available} (choose one with the parameter {SIGNATURE_PARAMETER})"
        )
    definition = graph.signature_def[key]
    return Signature(
        key,
        tuple(graph.meta_info_def.tags),
        _tensors(definition.inputs),
        _tensors(definition.outputs),
        frozenset(
            name
            for name, info in [*definition.inputs.items(), *definition.outputs.items()]
            if info.tensor_shape.unknown_rank
        ),
    )


def _tensors(infos: Mapping[str, Any]) -> tuple[ModelTensor, ...]:
    from tensorflow.core.framework import types_pb2

    tensors = []
    for name in sorted(infos):
        info = infos[name]
        type_name = types_pb2.DataType.Name(info.dtype)
        shape = tuple(None if d.size < 0 else d.size for d in info.tensor_shape.dim)
        tensors.append(ModelTensor(name, _CONFIG_TYPE_BY_TF.get(type_name), shape, type_name))
    return tuple(tensors)


def check_config(config: ModelConfig, signature: Signature) -> None:
    """The config's tensors exist in the signature with the signature's types."""
    for kind, entries, tensors in (
        ("input", config.input, signature.inputs),
        ("output", config.output, signature.outputs),
    ):
        check_names(
            kind, [e.name for e in entries], [t.name for t in tensors], signature.description
        )
        by_name = {t.name: t for t in tensors}
        for entry in entries:
            configured, tensor = data_type_name(entry.data_type), by_name[entry.name]
            if configured != tensor.data_type:
                raise InvalidArgument(
                    f"config {kind} '{entry.name}' is {configured}, but "
                    f"{signature.description} has {tensor.framework_type}"
                )


def check_known_ranks(config: ModelConfig, signature: Signature) -> None:
    """Tensors to be auto-completed need a rank; the config must give the dims of the others."""
    to_fill = [
        t.name
        for entries, tensors in (
            (config.input, signature.inputs),
            (config.output, signature.outputs),
        )
        if not entries
        for t in tensors
        if t.name in signature.unknown_rank
    ]
    if to_fill:
        raise InvalidArgument(
            f"{signature.description} leaves the rank of {to_fill} open: give the inputs and "
            "outputs with their dims in the config"
        )
