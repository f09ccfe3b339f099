"""Triton's `ModelConfig`, typed: parsing and serialising it, its parameters and datatypes.

The schema is the official `model_config_pb2` shipped with tritonclient; inferd keeps no copy
of it, only the mypy stubs generated from its descriptors (typings/, see
scripts/generate_proto_stubs.py). Every layer that reads a model config imports its types and
helpers from here.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from google.protobuf import descriptor, json_format, text_format
from tritonclient.grpc import model_config_pb2

from inferd.core.datatypes import from_config_datatype
from inferd.core.errors import InvalidArgument

ModelConfig: TypeAlias = model_config_pb2.ModelConfig
ModelInput: TypeAlias = model_config_pb2.ModelInput
ModelOutput: TypeAlias = model_config_pb2.ModelOutput
ConfigTensor: TypeAlias = model_config_pb2.ModelInput | model_config_pb2.ModelOutput
ModelInstanceGroup: TypeAlias = model_config_pb2.ModelInstanceGroup
ModelVersionPolicy: TypeAlias = model_config_pb2.ModelVersionPolicy
ModelSequenceBatching: TypeAlias = model_config_pb2.ModelSequenceBatching
ModelQueuePolicy: TypeAlias = model_config_pb2.ModelQueuePolicy
ModelEnsembling: TypeAlias = model_config_pb2.ModelEnsembling
ModelWarmup: TypeAlias = model_config_pb2.ModelWarmup
# The config's `DataType` enum: TYPE_FP32, TYPE_STRING, ...
DataType: TypeAlias = model_config_pb2.DataType.ValueType

_INT64_TYPES = frozenset(
    {
        descriptor.FieldDescriptor.TYPE_INT64,
        descriptor.FieldDescriptor.TYPE_UINT64,
        descriptor.FieldDescriptor.TYPE_SINT64,
        descriptor.FieldDescriptor.TYPE_FIXED64,
        descriptor.FieldDescriptor.TYPE_SFIXED64,
    }
)


def parse_pbtxt(text: str, source: str = "config.pbtxt") -> ModelConfig:
    config = ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise InvalidArgument(f"{source}: {exc}") from exc
    return config


def config_from_dict(data: object, source: str = "config") -> ModelConfig:
    """A `ModelConfig` from its JSON/YAML form (snake_case or camelCase field names)."""
    if not isinstance(data, dict):
        raise InvalidArgument(f"{source}: expected an object of model config fields")
    config = ModelConfig()
    try:
        json_format.ParseDict(data, config)
    except json_format.ParseError as exc:
        raise InvalidArgument(f"{source}: {exc}") from exc
    return config


def config_to_dict(config: ModelConfig) -> dict[str, Any]:
    """The JSON Triton serves at /config: proto field names, defaults included, int64 as numbers."""
    data = json_format.MessageToDict(
        config, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    _int64_to_numbers(data, config.DESCRIPTOR)
    return data


def _int64_to_numbers(data: dict[str, Any], message: descriptor.Descriptor) -> None:
    """Protobuf's JSON mapping writes 64-bit integers as strings; Triton clients expect numbers."""
    for field in message.fields:
        value = data.get(field.name)
        if value is None:
            continue
        repeated = _is_repeated(field)
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                _map_values_to_numbers(value, field.message_type.fields_by_name["value"])
            elif repeated:
                for item in value:
                    _int64_to_numbers(item, field.message_type)
            else:
                _int64_to_numbers(value, field.message_type)
        elif field.type in _INT64_TYPES:
            data[field.name] = [int(v) for v in value] if repeated else int(value)


def _is_repeated(field: descriptor.FieldDescriptor) -> bool:
    # protobuf 6 has `is_repeated` and deprecates `label`; older releases only have `label`.
    flag = getattr(field, "is_repeated", None)
    if flag is not None:
        return bool(flag)
    return bool(field.label == descriptor.FieldDescriptor.LABEL_REPEATED)  # type: ignore[attr-defined]


def _map_values_to_numbers(
    mapping: dict[str, Any], value_field: descriptor.FieldDescriptor
) -> None:
    if value_field.message_type is not None:
        for item in mapping.values():
            _int64_to_numbers(item, value_field.message_type)
    elif value_field.type in _INT64_TYPES:
        for key, item in mapping.items():
            mapping[key] = int(item)


def data_type_name(number: int) -> str:
    """TYPE_* name of a model-config DataType number."""
    try:
        return model_config_pb2.DataType.Name(number)  # type: ignore[arg-type]
    except ValueError:
        return f"DataType({number})"


def data_type_value(name: str) -> DataType:
    """The model-config DataType number of a TYPE_* name."""
    return model_config_pb2.DataType.Value(name)


def config_tensors(config: ModelConfig) -> list[ConfigTensor]:
    """The config's inputs, then its outputs."""
    return [*config.input, *config.output]


def tensor_datatype(number: int) -> str:
    """The V2 datatype (FP32, BYTES, ...) of a model-config DataType number; raises
    `InvalidArgument` for TYPE_INVALID and numbers the schema does not know."""
    return from_config_datatype(data_type_name(number))


def string_parameter(config: ModelConfig, key: str) -> str | None:
    """A config `parameters { key: ... value: { string_value: ... } }` entry, or None."""
    if key in config.parameters:
        return config.parameters[key].string_value
    return None


_BOOLEANS = {"true": True, "false": False}


def int_parameter(config: ModelConfig, key: str, minimum: int | None = None) -> int | None:
    """An integer config parameter, None when absent or empty; one below `minimum` is refused."""
    text = string_parameter(config, key)
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or (minimum is not None and value < minimum):
        raise InvalidArgument(f"parameter '{key}' must be {_integer_kind(minimum)}, got '{text}'")
    return value


def _integer_kind(minimum: int | None) -> str:
    if minimum is None:
        return "an integer"
    return {0: "a non-negative integer", 1: "a positive integer"}.get(
        minimum, f"an integer >= {minimum}"
    )


def bool_parameter(config: ModelConfig, key: str, default: bool) -> bool:
    """A `true`/`false` config parameter (any case), `default` when absent or empty."""
    text = string_parameter(config, key)
    if not text:
        return default
    flag = _BOOLEANS.get(text.strip().lower())
    if flag is None:
        raise InvalidArgument(f"parameter '{key}' must be 'true' or 'false', got '{text}'")
    return flag
