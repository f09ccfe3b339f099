"""ModelInferRequest / ModelInferResponse (tritonclient's protobuf bindings) <-> engine types.

Inputs arrive either as `raw_input_contents` (one little-endian buffer per input, viewed by
numpy without a further copy) or as typed `contents` (one repeated field per datatype family,
converted by numpy in C). Outputs always go back as `raw_output_contents`, which is what
tritonclient reads, appended to the rest of the message by `wire.py` without protobuf's copies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from typing import Final

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from inferd.core.datatypes import BYTES, numpy_dtype, serialize_bytes, v2_datatype
from inferd.core.errors import InvalidArgument
from inferd.core.types import Array, InferRequest, InferResponse, Parameters, RequestedOutput
from inferd.frontends.grpc.wire import Chunk, EncodedInferResponse
from inferd.frontends.shared_memory import (
    DISABLED,
    REGION,
    SharedMemoryRegistry,
    read_tensor,
    tensor_location,
    write_tensor,
)
from inferd.frontends.tensors import (
    InputFaults,
    array_from_bytes,
    check_shape,
    check_tensor_count,
)

# The typed `contents` field that carries each datatype (FP16 and BF16 have none: raw only).
_CONTENTS_FIELD: Final = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    BYTES: "bytes_contents",
}
# The numpy type of each field's elements, before narrowing to the input's datatype.
_FIELD_DTYPE: Final = {
    "bool_contents": np.dtype(np.bool_),
    "int_contents": np.dtype(np.int32),
    "int64_contents": np.dtype(np.int64),
    "uint_contents": np.dtype(np.uint32),
    "uint64_contents": np.dtype(np.uint64),
    "fp32_contents": np.dtype(np.float32),
    "fp64_contents": np.dtype(np.float64),
}


def decode_infer_request(
    message: pb.ModelInferRequest, shared_memory: SharedMemoryRegistry = DISABLED
) -> InferRequest:
    """A `ModelInferRequest` as an `InferRequest`; raises `InvalidArgument` naming the fault.

    Inputs in shared memory have no `raw_input_contents` entry (as in Triton).
    """
    tensors = message.inputs
    check_tensor_count(len(tensors), "inputs")
    check_tensor_count(len(message.outputs), "outputs")
    raw = message.raw_input_contents
    shared = {t.name: t for t in tensors if t.parameters and REGION in t.parameters}
    if raw and len(raw) != len(tensors) - len(shared):
        raise InvalidArgument(
            f"expected {len(tensors) - len(shared)} raw_input_contents (one per input "
            f"not in shared memory), got {len(raw)}"
        )
    raw_inputs = iter(raw)
    inputs: dict[str, Array] = {}
    faults = InputFaults()
    model = message.model_name
    for tensor in tensors:
        name = tensor.name
        if name in inputs:
            raise InvalidArgument(f"input '{name}' appears more than once")
        datatype = tensor.datatype
        numpy_dtype(datatype)  # rejects an unknown datatype by name
        shape = list(tensor.shape)
        check_shape(shape, name)
        try:
            if name in shared:
                inputs[name] = _shared_memory_input(tensor, shape, shared_memory, model)
            elif raw:
                if tensor.HasField("contents"):
                    raise InvalidArgument(
                        f"input '{name}' has both typed contents and raw_input_contents"
                    )
                data = memoryview(next(raw_inputs))
                inputs[name] = array_from_bytes(data, name, datatype, shape, model)
            else:
                inputs[name] = _array_from_contents(tensor, shape)
        except InvalidArgument as exc:
            faults.add(exc)
    faults.raise_any()
    outputs = [RequestedOutput(o.name, decode_parameters(o.parameters)) for o in message.outputs]
    for output in outputs:
        location = tensor_location(output.parameters, "output", output.name)
        if location is not None:  # fail before inference, as Triton does
            shared_memory.check(location)
    return InferRequest(
        model_name=message.model_name,
        model_version=message.model_version,
        inputs=inputs,
        id=message.id,
        outputs=outputs or None,
        parameters=decode_parameters(message.parameters),
    )


def _shared_memory_input(
    tensor: pb.ModelInferRequest.InferInputTensor,
    shape: list[int],
    shared_memory: SharedMemoryRegistry,
    model: str,
) -> Array:
    """The input copied out of the shared-memory region its parameters name."""
    name = tensor.name
    location = tensor_location(decode_parameters(tensor.parameters), "input", name)
    if location is None or tensor.HasField("contents"):
        raise InvalidArgument(f"input '{name}' has both contents and a shared memory region")
    return read_tensor(shared_memory, location, name, tensor.datatype, shape, model)


def _array_from_contents(tensor: pb.ModelInferRequest.InferInputTensor, shape: list[int]) -> Array:
    name, datatype = tensor.name, tensor.datatype
    expected = _CONTENTS_FIELD.get(datatype)
    present = [field.name for field, _ in tensor.contents.ListFields()]
    count = math.prod(shape)
    if expected is None:
        raise InvalidArgument(
            f"input '{name}': {datatype} has no typed contents field; send it in raw_input_contents"
        )
    if any(field != expected for field in present):
        raise InvalidArgument(
            f"input '{name}' of datatype {datatype} carries {', '.join(present)}; "
            f"its data belongs in {expected}"
        )
    if not present and count:
        raise InvalidArgument(f"input '{name}' has no data (neither contents nor raw contents)")
    values = getattr(tensor.contents, expected)
    if len(values) != count:
        raise InvalidArgument(
            f"input '{name}' has {len(values)} elements in {expected}, but shape {shape} "
            f"needs {count}"
        )
    if datatype == BYTES:
        array = np.empty(count, dtype=np.object_)
        array[:] = list(values)
        return array.reshape(shape)
    wide = np.fromiter(values, dtype=_FIELD_DTYPE[expected], count=count)
    return _narrow(wide, name, datatype).reshape(shape)


def _narrow(wide: Array, name: str, datatype: str) -> Array:
    """INT8/INT16 travel in int_contents, UINT8/UINT16 in uint_contents: check the range."""
    dtype = numpy_dtype(datatype)
    if dtype == wide.dtype:
        return wide
    limits = np.iinfo(dtype)  # type: ignore[type-var]
    if wide.size and (wide.min() < limits.min or wide.max() > limits.max):
        raise InvalidArgument(f"input '{name}' holds values outside the {datatype} range")
    return wide.astype(dtype)


def decode_parameters(parameters: Mapping[str, pb.InferParameter]) -> Parameters:
    """A map of `InferParameter` as plain Python values."""
    decoded: Parameters = {}
    if not parameters:  # most requests and outputs have none; `items()` costs even then
        return decoded
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        if choice is None:
            raise InvalidArgument(f"parameter '{key}' has no value")
        decoded[key] = getattr(parameter, choice)
    return decoded


def encode_parameters(
    parameters: Parameters, target: MutableMapping[str, pb.InferParameter]
) -> None:
    """Write plain values into a map of `InferParameter` (`target`, a protobuf map field)."""
    for key, value in parameters.items():
        parameter = target[key]
        if isinstance(value, bool | np.bool_):
            parameter.bool_param = bool(value)
        elif isinstance(value, int | np.integer):
            # uint64_param only for what int64 cannot hold, as Triton does.
            if int(value) > np.iinfo(np.int64).max:
                parameter.uint64_param = int(value)
            else:
                parameter.int64_param = int(value)
        elif isinstance(value, float | np.floating):
            parameter.double_param = float(value)
        else:
            parameter.string_param = value if isinstance(value, str) else str(value)


def encode_infer_response(
    response: InferResponse,
    message: pb.ModelInferResponse,
    requested: list[RequestedOutput] | None = None,
    shared_memory: SharedMemoryRegistry = DISABLED,
) -> EncodedInferResponse:
    """`response` as `message` (an empty `ModelInferResponse`, which gets all but the raw output
    contents) and the raw contents: the output arrays themselves where they are contiguous.

    An output `requested` in shared memory is written there and gets an empty raw entry.
    """
    in_memory = {o.name: o.parameters for o in requested or () if REGION in o.parameters}
    message.model_name = response.model_name
    message.model_version = response.model_version
    message.id = response.id
    encode_parameters(response.parameters, message.parameters)
    raw_outputs: list[Chunk] = []
    for name, array in response.outputs.items():
        datatype = v2_datatype(array.dtype)
        output = message.outputs.add(name=name, datatype=datatype, shape=array.shape)
        location = tensor_location(in_memory.get(name, {}), "output", name)
        if location is not None:
            write_tensor(shared_memory, location, name, array, datatype)
            encode_parameters(location.parameters(), output.parameters)
            raw_outputs.append(b"")
            continue
        raw_outputs.append(raw_contents(array, datatype))
    return EncodedInferResponse(message, raw_outputs)


def raw_contents(array: Array, datatype: str) -> Chunk:
    """One output's `raw_output_contents` entry: the array itself where it is contiguous."""
    return serialize_bytes(array) if datatype == BYTES else np.ascontiguousarray(array)
