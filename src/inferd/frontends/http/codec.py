"""KServe V2 JSON bodies and the binary tensor data extension <-> InferRequest / InferResponse.

Binary inputs become numpy views of the request body (no copy); JSON inputs are converted by
numpy in one call per tensor; outputs are written with orjson's native numpy support or as
raw bytes appended after the JSON header.
"""

from __future__ import annotations

import math
from typing import Any, TypeGuard

import numpy as np
import orjson

from inferd.core.datatypes import (
    BYTES,
    as_bytes,
    numpy_dtype,
    v2_datatype,
)
from inferd.core.errors import InvalidArgument
from inferd.core.types import Array, InferRequest, InferResponse, RequestedOutput
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
    raw_bytes,
)

_JSON_KINDS_ALLOWED = {"b": "b", "i": "iub", "u": "iub", "f": "iubf"}


def loads(data: bytes | memoryview, what: str = "request") -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):  # orjson's fixed limit
            raise InvalidArgument(f"JSON in {what} is nested deeper than 1024 levels") from None
        raise InvalidArgument(f"malformed JSON in {what}: {exc}") from None


def decode_infer_request(
    body: bytes,
    header_length: int | None,
    model_name: str,
    model_version: str,
    shared_memory: SharedMemoryRegistry = DISABLED,
) -> InferRequest:
    header: bytes | memoryview
    if header_length is None:
        header, binary = body, memoryview(b"")
    else:
        if not 0 <= header_length <= len(body):
            raise InvalidArgument(
                f"Inference-Header-Content-Length {header_length} is outside the "
                f"{len(body)}-byte body"
            )
        view = memoryview(body)
        header, binary = view[:header_length], view[header_length:]
    document = loads(header)
    if not isinstance(document, dict):
        raise InvalidArgument("the inference request must be a JSON object")
    inputs = _decode_inputs(document.get("inputs"), binary, shared_memory, model_name)
    request_id = document.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidArgument("'id' must be a string")
    return InferRequest(
        model_name=model_name,
        model_version=model_version,
        inputs=inputs,
        id=request_id,
        outputs=_decode_outputs(document.get("outputs"), shared_memory),
        parameters=_flagged(_parameters(document, "request"), "binary_data_output", "the request"),
    )


def _parameters(item: dict[str, Any], kind: str, name: str | None = None) -> dict[str, Any]:
    """`item`'s parameters; `kind` ("request", "input", "output") and `name` name it in errors."""
    parameters = item.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        owner = kind if name is None else f"{kind} '{name}'"
        raise InvalidArgument(f"'parameters' of {owner} must be an object")
    return parameters


def _flagged(parameters: dict[str, Any], flag: str, owner: str) -> dict[str, Any]:
    """`parameters`, whose `flag` is a JSON boolean where given: Triton refuses any other value
    rather than read it as true or false."""
    if not isinstance(parameters.get(flag, False), bool):
        raise InvalidArgument(f"parameter '{flag}' of {owner} must be a boolean")
    return parameters


def _decode_inputs(
    items: Any, binary: memoryview, shared_memory: SharedMemoryRegistry, model: str
) -> dict[str, Array]:
    if not isinstance(items, list) or not items:
        raise InvalidArgument("'inputs' must be a non-empty list")
    check_tensor_count(len(items), "inputs")
    inputs: dict[str, Array] = {}
    offset = 0
    faults = InputFaults()
    for item in items:
        if not isinstance(item, dict):
            raise InvalidArgument("each input must be an object")
        header = name, datatype, shape = _tensor_header(item)
        if name in inputs:
            raise InvalidArgument(f"input '{name}' appears more than once")
        parameters = _parameters(item, "input", name)
        size = parameters.get("binary_data_size")
        in_memory = REGION in parameters
        _check_source(item, in_memory, size, binary[offset:], name)
        try:
            if in_memory:
                inputs[name] = _shared_memory_input(item, header, parameters, shared_memory, model)
            elif size is not None:
                data = binary[offset : offset + size]
                offset += size
                inputs[name] = array_from_bytes(data, name, datatype, shape, model)
            else:
                inputs[name] = _array_from_json(item["data"], name, datatype, shape)
        except InvalidArgument as exc:
            faults.add(exc)
    faults.raise_any()
    if offset != len(binary):
        raise InvalidArgument(
            f"the body holds {len(binary) - offset} bytes of binary data no input claims"
        )
    return inputs


def _check_source(
    item: dict[str, Any], in_memory: bool, size: Any, binary: memoryview, name: str
) -> None:
    """An input outside shared memory has its data in one place: binary data that fits in
    what remains of the body (`binary`), or 'data'."""
    if in_memory:
        return  # its parameters are checked as its region is read
    if size is not None:
        if "data" in item:
            raise _ambiguous_input(name)
        _check_binary_size(binary, size, name)
    elif "data" not in item:
        raise InvalidArgument(
            f"input '{name}' has no 'data', binary_data_size or shared_memory_region"
        )


def _check_binary_size(binary: memoryview, size: Any, name: str) -> None:
    """`size` must fit in the binary data that remains (`binary`)."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidArgument(f"input '{name}': binary_data_size must be a non-negative integer")
    if size > len(binary):
        raise InvalidArgument(
            f"input '{name}': binary_data_size {size} runs past the end of the binary data"
        )


def _shared_memory_input(
    item: dict[str, Any],
    header: tuple[str, str, list[int]],
    parameters: dict[str, Any],
    shared_memory: SharedMemoryRegistry,
    model: str,
) -> Array:
    """The input copied out of the shared-memory region its parameters name."""
    name, datatype, shape = header
    location = tensor_location(parameters, "input", name)
    if location is None or "data" in item or "binary_data_size" in parameters:
        raise _ambiguous_input(name)
    return read_tensor(shared_memory, location, name, datatype, shape, model)


def _ambiguous_input(name: str) -> InvalidArgument:
    return InvalidArgument(
        f"input '{name}' must set only one of 'data', 'binary_data_size' and 'shared_memory_region'"
    )


def _tensor_header(item: dict[str, Any]) -> tuple[str, str, list[int]]:
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidArgument("each input needs a non-empty string 'name'")
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        raise InvalidArgument(f"input '{name}' needs a string 'datatype'")
    numpy_dtype(datatype)
    shape = item.get("shape")
    if not _is_shape(shape):
        raise InvalidArgument(f"input '{name}': 'shape' must be a list of non-negative integers")
    check_shape(shape, name)
    return name, datatype, shape


def _is_shape(shape: Any) -> TypeGuard[list[int]]:
    # `type(...) is int` also refuses bool, which subclasses int
    return type(shape) is list and all(type(dim) is int and dim >= 0 for dim in shape)


def _array_from_json(data: Any, name: str, datatype: str, shape: list[int]) -> Array:
    if not isinstance(data, list):
        raise InvalidArgument(f"input '{name}': 'data' must be a list")
    count = math.prod(shape)
    # Counted from the list lengths before numpy converts anything: a few elements' shape
    # with millions of values is refused without converting them. Ragged nesting is left to
    # numpy, which refuses it.
    nested = _nested_shape(data)
    if nested is not None and math.prod(nested) != count:
        raise InvalidArgument(
            f"input '{name}' has {math.prod(nested)} elements in 'data', but shape {shape} "
            f"needs {count}"
        )
    return values_from_json(data, name, datatype, "'data'").reshape(shape)


def _nested_shape(data: list[Any]) -> list[int] | None:
    """The shape of the nested lists `data`, or None when they are ragged; it looks at every
    list, never at the values (a value beside a list is left to numpy)."""
    shape: list[int] = []
    level: list[Any] = [data]
    while True:
        length = len(level[0])
        if any(type(item) is not list or len(item) != length for item in level):
            return None
        shape.append(length)
        if not length or type(level[0][0]) is not list:
            return shape
        level = [inner for item in level for inner in item]


def values_from_json(data: list[Any], name: str, datatype: str, what: str) -> Array:
    """The JSON values of input `name` (`what` names them in errors) as an array of `datatype`,
    shaped as the nesting of `data`; values of another JSON type are refused."""
    try:
        return _bytes_from_json(data) if datatype == BYTES else _numbers_from_json(data, datatype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidArgument(
            f"input '{name}': {what} does not hold {datatype} values: {exc}"
        ) from None


def _numbers_from_json(data: list[Any], datatype: str) -> Array:
    dtype = numpy_dtype(datatype)
    parsed = np.array(data)
    if parsed.size == 0:
        return parsed.astype(dtype)
    allowed = _JSON_KINDS_ALLOWED.get(dtype.kind, "iubf")  # BF16 and FP16 behave like floats
    if parsed.dtype.kind not in allowed:
        raise ValueError(f"found {parsed.dtype.kind!r}-kind values")
    if dtype.kind in "iu" and parsed.dtype.kind in "iu":
        limits = np.iinfo(dtype)  # type: ignore[type-var]
        if parsed.min() < limits.min or parsed.max() > limits.max:
            raise ValueError(f"values outside the {datatype} range")
    return parsed.astype(dtype)


def _bytes_from_json(data: list[Any]) -> Array:
    parsed = np.array(data, dtype=np.object_)
    out = np.empty(parsed.size, dtype=np.object_)
    for index, item in enumerate(parsed.reshape(-1)):
        if not isinstance(item, str):
            raise TypeError("BYTES elements in JSON must be strings")
        out[index] = item.encode()
    return out.reshape(parsed.shape)


def _decode_outputs(
    items: Any, shared_memory: SharedMemoryRegistry
) -> list[RequestedOutput] | None:
    if items is None:
        return None
    if not isinstance(items, list):
        raise InvalidArgument("'outputs' must be a list")
    check_tensor_count(len(items), "outputs")
    outputs: list[RequestedOutput] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidArgument("each requested output needs a string 'name'")
        name = item["name"]
        parameters = _flagged(_parameters(item, "output", name), "binary_data", f"output '{name}'")
        location = tensor_location(parameters, "output", name)
        if location is not None:  # fail before inference, as Triton does
            shared_memory.check(location)
        outputs.append(RequestedOutput(name, parameters))
    return outputs or None  # an empty list asks for nothing in particular: every output


def encode_infer_response(
    response: InferResponse,
    request: InferRequest,
    shared_memory: SharedMemoryRegistry = DISABLED,
) -> tuple[bytes, int | None]:
    """(body, JSON header length when binary data follows it, else None)."""
    binary_default = bool(request.parameters.get("binary_data_output", False))
    requested = {o.name: o.parameters for o in request.outputs or ()}
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes | memoryview] = []
    for name, array in response.outputs.items():
        datatype = v2_datatype(array.dtype)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        parameters = requested.get(name, {})
        location = tensor_location(parameters, "output", name)
        if location is not None:
            # Reported without data or parameters, as Triton does: its C++ client
            # (perf_analyzer) reads `binary_data_size` from any output that has parameters.
            write_tensor(shared_memory, location, name, array, datatype)
        elif bool(parameters.get("binary_data", binary_default)):
            raw = raw_bytes(array, datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = json_data(array, datatype)
        outputs.append(entry)
    document: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": outputs,
    }
    if response.id:
        document["id"] = response.id
    if response.parameters:
        document["parameters"] = response.parameters
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def json_data(array: Array, datatype: str) -> Any:
    """A tensor's elements as JSON writes them, flat (BYTES as text, numbers for orjson)."""
    flat = np.ascontiguousarray(array).reshape(-1)
    if datatype == BYTES:
        return [as_bytes(item).decode(errors="replace") for item in flat]
    if datatype == "BF16":
        return flat.astype(np.float32)
    return flat
