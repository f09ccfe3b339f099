"""Hypothesis strategies of malformed infer requests, over HTTP (JSON, binary tensor data, raw
bodies) and gRPC (ModelInferRequest), for the property that every one is answered with a client
error carrying a message, or served: never a server error.

Each request starts valid for one of the models of `fuzz_repository` and then takes one to
three mutations (a field of another type, a shape or datatype that does not fit, an element too
many, binary sizes that do not add up...), so that most of them get past the first checks and
reach the deeper ones.
"""

from __future__ import annotations

import gzip
import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from onnx import TensorProto
from tritonclient.grpc import service_pb2 as pb

import generate_models

DATATYPES = ["BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
             "FP16", "BF16", "FP32", "FP64", "BYTES"]  # fmt: skip
_SIZES = {"BOOL": 1, "INT8": 1, "UINT8": 1, "INT16": 2, "UINT16": 2, "FP16": 2, "BF16": 2,
          "INT32": 4, "UINT32": 4, "FP32": 4, "INT64": 8, "UINT64": 8, "FP64": 8}  # fmt: skip
# model -> (its inputs, their datatype, the second dimension of a valid shape: -1 for any)
MODELS = {"simple": (("INPUT0", "INPUT1"), "INT32", 16), "text": (("INPUT0",), "BYTES", -1)}
PARAMETER_KEYS = ["binary_data_size", "binary_data", "binary_data_output",
                  "shared_memory_region", "shared_memory_offset", "shared_memory_byte_size",
                  "sequence_id", "sequence_start", "sequence_end", "priority", "timeout",
                  "classification", "other"]  # fmt: skip


def fuzz_repository(root: Path) -> Path:
    """`simple` (two INT32 [-1, 16] inputs) and `text` (a BYTES identity, [-1, -1])."""
    generate_models.simple_model(root / "simple" / "1" / "model.onnx")
    (root / "simple" / "config.pbtxt").write_text(generate_models.SIMPLE_CONFIG)
    generate_models.identity_model(
        root / "text" / "1" / "model.onnx", TensorProto.STRING, ["batch", "n"]
    )
    return root


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.integers(-5, 20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_shapes = (
    st.sampled_from([[1, 16], [16], [2, 16], [1, 4], [1, 0], [], [0], [1, 16, 1], [-1, 16]])
    | st.lists(st.integers(-3, 40), max_size=4)
    | st.lists(st.integers(0, 2**62), min_size=1, max_size=3)
)
_names = st.sampled_from(["INPUT0", "INPUT1", "OUTPUT0", "", "x" * 300, "ü", "../x"])
_datatypes = st.sampled_from([*DATATYPES, "FOO", "int32", ""])


@st.composite
def _valid_shape(draw: st.DrawFn, width: int) -> list[int]:
    rows = draw(st.integers(1, 3))
    return [rows, width if width >= 0 else draw(st.integers(0, 4))]


def _element(datatype: str) -> st.SearchStrategy[Any]:
    if datatype == "BYTES":
        return st.text(max_size=5)
    if datatype == "BOOL":
        return st.booleans()
    if datatype.startswith(("FP", "BF")):
        return st.floats(-1e6, 1e6)
    return st.integers(-(2**31), 2**31 - 1)


def _wire(datatype: str, values: list[Any]) -> bytes:
    """Values as binary tensor data (BYTES length-prefixed)."""
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)
    return struct.pack(f"<{len(values)}i", *values)


# --- HTTP -------------------------------------------------------------------------------------


@dataclass
class HttpCase:
    """One request: its path, headers and body, and what it was built from (for reports)."""

    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    built: Any = field(default=None, repr=False)

    def __repr__(self) -> str:
        # Short enough for Hypothesis to report (it warns, an error here, past 30 kB).
        body = self.body if len(self.body) <= 600 else self.body[:600] + b"..."
        return f"HttpCase({self.path!r}, {body!r}, {self.headers!r})"


@dataclass
class _HttpRequest:
    model: str
    version: str
    document: Any
    binary: list[bytes]  # each binary input's bytes, in order
    header_length: str | None = None  # None: computed; else sent as it is
    encoding: str = ""


@st.composite
def _valid_http(draw: st.DrawFn) -> _HttpRequest:
    model = draw(st.sampled_from(sorted(MODELS)))
    names, datatype, width = MODELS[model]
    inputs, binary = [], []
    for name in names:
        shape = draw(_valid_shape(width))
        values = draw(st.lists(_element(datatype), min_size=math.prod(shape),
                               max_size=math.prod(shape)))  # fmt: skip
        item: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if draw(st.booleans()):
            binary.append(_wire(datatype, values))
            item["parameters"] = {"binary_data_size": len(binary[-1])}
        else:
            item["data"] = values
        inputs.append(item)
    return _HttpRequest(model, draw(st.sampled_from(["", "1"])), {"inputs": inputs}, binary)


def _an_input(draw: st.DrawFn, request: _HttpRequest) -> dict[str, Any]:
    """One of the request's input objects (a new one where it has none left)."""
    inputs = request.document.get("inputs") if isinstance(request.document, dict) else None
    candidates = (
        [item for item in inputs if isinstance(item, dict)] if isinstance(inputs, list) else []
    )
    return draw(st.sampled_from(candidates)) if candidates else {}


def _input_field(draw: st.DrawFn, request: _HttpRequest) -> None:
    key = draw(st.sampled_from(["name", "datatype", "shape", "data", "parameters"]))
    _an_input(draw, request)[key] = draw(_json | _names | _datatypes | _shapes)


def _drop_field(draw: st.DrawFn, request: _HttpRequest) -> None:
    item = _an_input(draw, request)
    if item:
        del item[draw(st.sampled_from(sorted(item)))]


def _datatype(draw: st.DrawFn, request: _HttpRequest) -> None:
    _an_input(draw, request)["datatype"] = draw(_datatypes)


def _shape(draw: st.DrawFn, request: _HttpRequest) -> None:
    _an_input(draw, request)["shape"] = draw(_shapes)


def _data(draw: st.DrawFn, request: _HttpRequest) -> None:
    """An element too many or too few, one of another type, or another nesting."""
    item = _an_input(draw, request)
    data = item.get("data")
    if not isinstance(data, list) or not data:
        item["data"] = draw(st.lists(_scalars, max_size=20))
        return
    change = draw(st.sampled_from(["pop", "append", "element", "nest"]))
    if change == "pop":
        data.pop()
    elif change == "append":
        data.append(draw(_scalars))
    elif change == "element":
        data[draw(st.integers(0, len(data) - 1))] = draw(_json)
    else:
        item["data"] = [data[:1], data[1:]]


def _binary_size(draw: st.DrawFn, request: _HttpRequest) -> None:
    parameters = _an_input(draw, request).setdefault("parameters", {})
    if isinstance(parameters, dict):
        parameters["binary_data_size"] = draw(st.integers(-2, 200) | _scalars)


def _binary_bytes(draw: st.DrawFn, request: _HttpRequest) -> None:
    if request.binary:
        index = draw(st.integers(0, len(request.binary) - 1))
        request.binary[index] = draw(st.binary(max_size=80))
    else:
        request.binary.append(draw(st.binary(min_size=1, max_size=16)))


def _input_count(draw: st.DrawFn, request: _HttpRequest) -> None:
    inputs = request.document.get("inputs") if isinstance(request.document, dict) else None
    if not isinstance(inputs, list):
        return
    if inputs and draw(st.booleans()):
        inputs.pop(draw(st.integers(0, len(inputs) - 1)))
    else:
        inputs.append(draw(st.sampled_from(inputs)) if inputs else {})


def _input_parameters(draw: st.DrawFn, request: _HttpRequest) -> None:
    keyed = st.dictionaries(st.sampled_from(PARAMETER_KEYS), _json, max_size=3)
    _an_input(draw, request)["parameters"] = draw(keyed | _json)


def _request_field(draw: st.DrawFn, request: _HttpRequest) -> None:
    if isinstance(request.document, dict):
        key = draw(st.sampled_from(["inputs", "outputs", "id", "parameters"]))
        request.document[key] = draw(_outputs if key == "outputs" else _json)


def _document(draw: st.DrawFn, request: _HttpRequest) -> None:
    request.document = draw(_json)


def _header_length(draw: st.DrawFn, request: _HttpRequest) -> None:
    request.header_length = draw(st.sampled_from(["-1", "x", "0", "99999", " 3", "1e3"]))


def _encoding(draw: st.DrawFn, request: _HttpRequest) -> None:
    request.encoding = draw(st.sampled_from(["gzip", "gzip-cut", "deflate-garbage", "br"]))


def _target(draw: st.DrawFn, request: _HttpRequest) -> None:
    request.model = draw(st.sampled_from([*MODELS, "nope", "simple%2F..", "%00"]))
    request.version = draw(st.sampled_from(["", "1", "2", "-1", "x"]))


_HTTP_MUTATIONS = [_data, _shape, _datatype, _binary_size, _binary_bytes, _input_field,
                   _drop_field, _input_count, _input_parameters, _request_field, _header_length,
                   _encoding, _target, _document]  # fmt: skip


_outputs = (
    st.lists(
        st.fixed_dictionaries(
            {"name": st.sampled_from(["OUTPUT0", "OUTPUT1", "nope"]) | _scalars},
            optional={
                "parameters": st.dictionaries(st.sampled_from(PARAMETER_KEYS), _json, max_size=2)
            },
        ),
        max_size=3,
    )
    | _json
)


@st.composite
def http_infer_cases(draw: st.DrawFn) -> HttpCase:
    request = draw(_valid_http())
    for _ in range(draw(st.integers(1, 3))):
        draw(st.sampled_from(_HTTP_MUTATIONS))(draw, request)
    # json (not orjson) writes what a careless client might: NaN, Infinity, 70-bit integers.
    header = json.dumps(request.document).encode()
    headers = {"Content-Type": "application/json"}
    if request.binary or request.header_length is not None:
        headers = {
            "Inference-Header-Content-Length": request.header_length or str(len(header)),
            "Content-Type": "application/octet-stream",
        }
    body = header + b"".join(request.binary)
    if request.encoding:
        body, headers["Content-Encoding"] = _encoded(request.encoding, body)
    path = f"/v2/models/{request.model}"
    path += (f"/versions/{request.version}" if request.version else "") + "/infer"
    return HttpCase(path, body, headers, request)


def _encoded(kind: str, body: bytes) -> tuple[bytes, str]:
    if kind == "gzip":
        return gzip.compress(body), "gzip"
    if kind == "gzip-cut":
        return gzip.compress(body)[:-5], "gzip"
    if kind == "deflate-garbage":
        return body, "deflate"
    return body, "br"


@st.composite
def http_raw_cases(draw: st.DrawFn) -> HttpCase:
    """Bodies that are not JSON at all: random bytes, as JSON or as a raw binary request
    (Inference-Header-Content-Length 0: the body is the one input's bytes)."""
    model = draw(st.sampled_from([*MODELS, "nope"]))
    body = draw(st.binary(max_size=200))
    headers = draw(
        st.sampled_from(
            [
                {},
                {"Content-Type": "application/json"},
                {"Inference-Header-Content-Length": "0"},
                {"Inference-Header-Content-Length": str(len(body) // 2)},
            ]
        )
    )
    return HttpCase(f"/v2/models/{model}/infer", body, dict(headers))


# --- gRPC -------------------------------------------------------------------------------------

_INT64 = st.integers(-(2**63), 2**63 - 1)
_grpc_shapes = (
    st.sampled_from([[1, 16], [16], [2, 16], [1, 0], [], [1, 3], [1, 16, 1]])
    | st.lists(st.integers(-2, 20), max_size=4)
    | st.lists(_INT64, max_size=3)
)
_CONTENTS = {
    "bool_contents": st.booleans(),
    "int_contents": st.integers(-(2**31), 2**31 - 1),
    "int64_contents": _INT64,
    "uint_contents": st.integers(0, 2**32 - 1),
    "uint64_contents": st.integers(0, 2**64 - 1),
    "fp32_contents": st.floats(width=32),
    "fp64_contents": st.floats(),
    "bytes_contents": st.binary(max_size=6),
}


@st.composite
def _valid_grpc(draw: st.DrawFn) -> pb.ModelInferRequest:
    model = draw(st.sampled_from(sorted(MODELS)))
    names, datatype, width = MODELS[model]
    message = pb.ModelInferRequest(model_name=model, model_version=draw(st.sampled_from(["", "1"])))
    raw = draw(st.booleans())
    for name in names:
        shape = draw(_valid_shape(width))
        values = draw(st.lists(_element(datatype), min_size=math.prod(shape),
                               max_size=math.prod(shape)))  # fmt: skip
        tensor = message.inputs.add(name=name, datatype=datatype, shape=shape)
        if raw:
            message.raw_input_contents.append(_wire(datatype, values))
        elif datatype == "BYTES":
            tensor.contents.bytes_contents.extend(v.encode() for v in values)
        else:
            tensor.contents.int_contents.extend(values)
    return message


def _set_parameter(draw: st.DrawFn, target: Any) -> None:
    parameter = target[draw(st.sampled_from(PARAMETER_KEYS) | st.text(max_size=4))]
    kind = draw(st.sampled_from(["bool", "int64", "string", "double", "uint64", "unset"]))
    if kind == "bool":
        parameter.bool_param = draw(st.booleans())
    elif kind == "int64":
        parameter.int64_param = draw(_INT64 | st.integers(-2, 64))
    elif kind == "string":
        parameter.string_param = draw(st.text(max_size=8))
    elif kind == "double":
        parameter.double_param = draw(st.floats())
    elif kind == "uint64":
        parameter.uint64_param = draw(st.integers(0, 2**64 - 1))


def _a_tensor(draw: st.DrawFn, message: pb.ModelInferRequest) -> Any:
    """One of the message's inputs (a new one where it has none left)."""
    if not message.inputs:
        return message.inputs.add(name="INPUT0", datatype="INT32", shape=[1, 16])
    return draw(st.sampled_from(list(message.inputs)))


def _grpc_name(draw: st.DrawFn, message: pb.ModelInferRequest) -> None:
    _a_tensor(draw, message).name = draw(_names)


def _grpc_datatype(draw: st.DrawFn, message: pb.ModelInferRequest) -> None:
    _a_tensor(draw, message).datatype = draw(_datatypes)


def _grpc_shape(draw: st.DrawFn, message: pb.ModelInferRequest) -> None:
    tensor = _a_tensor(draw, message)
    del tensor.shape[:]
    tensor.shape.extend(draw(_grpc_shapes))


def _grpc_contents(draw: st.DrawFn, message: pb.ModelInferRequest) -> None:
    """Another contents field, or an element too many or too few in the one there."""
    contents = _a_tensor(draw, message).contents
    present = contents.ListFields()
    if not present or draw(st.booleans()):
        name = draw(st.sampled_from(sorted(_CONTENTS)))
        getattr(contents, name).extend(draw(st.lists(_CONTENTS[name], max_size=40)))
        return
    values = present[0][1]
    if values and draw(st.booleans()):
        values.pop()
    else:
        values.append(values[0] if values else draw(_CONTENTS[present[0][0].name]))


def _grpc_raw(draw: st.DrawFn, message: pb.ModelInferRequest) -> None:
    """Other raw bytes for an input, or one entry too many or too few."""
    raw = message.raw_input_contents
    change = draw(st.sampled_from(["bytes", "pop", "append"]))
    if change == "bytes" and raw:
        raw[draw(st.integers(0, len(raw) - 1))] = draw(st.binary(max_size=80))
    elif change == "pop" and raw:
        raw.pop()
    else:
        raw.append(draw(st.binary(max_size=16)))


def _grpc_input_count(draw: st.DrawFn, message: pb.ModelInferRequest) -> None:
    if message.inputs and draw(st.booleans()):
        message.inputs.pop()
    else:
        message.inputs.add(name=draw(_names), datatype=draw(_datatypes), shape=draw(_grpc_shapes))


def _grpc_input_parameter(draw: st.DrawFn, message: pb.ModelInferRequest) -> None:
    _set_parameter(draw, _a_tensor(draw, message).parameters)


def _grpc_request_parameter(draw: st.DrawFn, message: pb.ModelInferRequest) -> None:
    _set_parameter(draw, message.parameters)


def _grpc_output(draw: st.DrawFn, message: pb.ModelInferRequest) -> None:
    output = message.outputs.add(name=draw(st.sampled_from(["OUTPUT0", "OUTPUT1", "", "x"])))
    if draw(st.booleans()):
        _set_parameter(draw, output.parameters)


def _grpc_target(draw: st.DrawFn, message: pb.ModelInferRequest) -> None:
    message.model_name = draw(st.sampled_from([*MODELS, "nope", "", "../simple"]))
    message.model_version = draw(st.sampled_from(["", "1", "2", "-1", "x"]))


_GRPC_MUTATIONS = [_grpc_contents, _grpc_raw, _grpc_shape, _grpc_datatype, _grpc_name,
                   _grpc_input_count, _grpc_input_parameter, _grpc_request_parameter,
                   _grpc_output, _grpc_target]  # fmt: skip


@st.composite
def grpc_infer_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    message = draw(_valid_grpc())
    for _ in range(draw(st.integers(1, 3))):
        draw(st.sampled_from(_GRPC_MUTATIONS))(draw, message)
    return message
