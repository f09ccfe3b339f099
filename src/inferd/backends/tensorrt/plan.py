"""What a TensorRT plan offers, as plain data: its IO tensors, datatypes and profile ranges.

Read once from a deserialized engine (`describe_engine`), then used without TensorRT to
auto-complete the config, check it, and pick the optimization profile a batch fits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inferd.backends import autocomplete
from inferd.core.errors import InvalidArgument, Unsupported
from inferd.core.model_config import ModelConfig, config_tensors, data_type_name

Shape = tuple[int, ...]

# TensorRT DataType names -> model-config types. FP8, INT4 and FP4 have no KServe V2 datatype.
CONFIG_TYPE_BY_TRT = {
    "FLOAT": "TYPE_FP32",
    "HALF": "TYPE_FP16",
    "BF16": "TYPE_BF16",
    "INT8": "TYPE_INT8",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "BOOL": "TYPE_BOOL",
    "UINT8": "TYPE_UINT8",
}


def config_type(trt_type_name: str, tensor: str) -> str:
    """The config datatype of a TensorRT DataType name; Unsupported for types V2 cannot carry."""
    found = CONFIG_TYPE_BY_TRT.get(trt_type_name)
    if found is None:
        raise Unsupported(f"tensor '{tensor}' has TensorRT type {trt_type_name}, which inferd "
                          "cannot exchange with clients")  # fmt: skip
    return found


@dataclass(frozen=True, slots=True)
class ProfileRange:
    minimum: Shape
    maximum: Shape

    def contains(self, shape: Shape) -> bool:
        return len(shape) == len(self.minimum) and all(
            low <= size <= high
            for size, low, high in zip(shape, self.minimum, self.maximum, strict=True)
        )


@dataclass(frozen=True, slots=True)
class IOTensor:
    name: str
    is_input: bool
    config_type: str
    shape: Shape  # -1 where the engine leaves a dimension to the optimization profile
    profiles: tuple[ProfileRange, ...] = ()  # one per optimization profile, inputs only


@dataclass(frozen=True, slots=True)
class PlanSignature:
    tensors: tuple[IOTensor, ...]
    profile_count: int

    @property
    def inputs(self) -> list[IOTensor]:
        return [t for t in self.tensors if t.is_input]

    @property
    def outputs(self) -> list[IOTensor]:
        return [t for t in self.tensors if not t.is_input]

    def batch_capacity(self) -> int:
        """The largest batch every profile-range reaches when every tensor's first dimension is
        dynamic and a profile admits batch 1; 0 when the plan cannot batch."""
        if not self.tensors or any(not t.shape or t.shape[0] != -1 for t in self.tensors):
            return 0
        usable = [
            index
            for index in range(self.profile_count)
            if all(t.profiles[index].minimum[0] <= 1 for t in self.inputs)
        ]
        if not usable:
            return 0
        return max(min(t.profiles[i].maximum[0] for t in self.inputs) for i in usable)

    def profile_for(self, shapes: Mapping[str, Shape]) -> int:
        """The first optimization profile admitting every input shape of a batch."""
        inputs = self.inputs
        for index in range(self.profile_count):
            if all(t.profiles[index].contains(shapes[t.name]) for t in inputs if t.name in shapes):
                return index
        ranges = "; ".join(
            f"'{t.name}' {list(shapes.get(t.name, ()))} not in "
            + " or ".join(f"{list(p.minimum)}..{list(p.maximum)}" for p in t.profiles)
            for t in inputs
            if not any(p.contains(shapes.get(t.name, ())) for p in t.profiles)
        )
        raise InvalidArgument(f"input shapes outside every optimization profile: {ranges}")


def describe_engine(engine: Any, trt: Any) -> PlanSignature:
    """The signature of a deserialized `ICudaEngine` (TensorRT 10 name-based IO API)."""
    tensors: list[IOTensor] = []
    profile_count = engine.num_optimization_profiles
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        if engine.get_tensor_location(name) != trt.TensorLocation.DEVICE:
            raise Unsupported(f"tensor '{name}' is a host (shape) tensor, which inferd cannot feed")
        if engine.get_tensor_format(name) != trt.TensorFormat.LINEAR:
            raise Unsupported(f"tensor '{name}' uses a vectorized format; build it LINEAR")
        shape = tuple(engine.get_tensor_shape(name))
        profiles: tuple[ProfileRange, ...] = ()
        if is_input:
            profiles = tuple(_profile_range(engine, name, shape, p) for p in range(profile_count))
        datatype = config_type(engine.get_tensor_dtype(name).name, name)
        tensors.append(IOTensor(name, is_input, datatype, shape, profiles))
    return PlanSignature(tuple(tensors), profile_count)


def _profile_range(engine: Any, name: str, shape: Shape, profile: int) -> ProfileRange:
    if all(size >= 0 for size in shape):  # profiles only cover inputs with dynamic dimensions
        return ProfileRange(shape, shape)
    minimum, _, maximum = engine.get_tensor_profile_shape(name, profile)
    return ProfileRange(tuple(minimum), tuple(maximum))


def complete_tensors(
    config: ModelConfig, signature: PlanSignature, default_max_batch_size: int
) -> None:
    """Fill a config's empty inputs/outputs from the plan (Triton's rules, with the profiles'
    batch capacity as the inferred `max_batch_size`); check the datatypes the config gives."""
    capacity = signature.batch_capacity()
    autocomplete.complete_tensors(
        config,
        [_model_tensor(t) for t in signature.inputs],
        [_model_tensor(t) for t in signature.outputs],
        capacity if default_max_batch_size > 0 else 0,
        "the TensorRT plan",
    )
    if config.max_batch_size > capacity:
        raise InvalidArgument(
            f"max_batch_size {config.max_batch_size} exceeds the largest batch the plan's "
            f"optimization profiles admit ({capacity}; batching needs a dynamic first dimension "
            "in every plan tensor)"
        )
    by_name = {t.name: t for t in signature.tensors}
    for entry in config_tensors(config):
        configured = data_type_name(entry.data_type)
        if configured != by_name[entry.name].config_type:
            raise InvalidArgument(
                f"config gives '{entry.name}' {configured}, "
                f"the plan has {by_name[entry.name].config_type}"
            )


def _model_tensor(tensor: IOTensor) -> autocomplete.ModelTensor:
    shape = tuple(None if size < 0 else size for size in tensor.shape)
    return autocomplete.ModelTensor(tensor.name, tensor.config_type, shape, tensor.config_type)
