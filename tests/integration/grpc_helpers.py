"""gRPC helpers for integration tests: the raw service stub, reference runs, a serving check."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
from tritonclient.grpc import service_pb2, service_pb2_grpc

A = np.arange(16, dtype=np.int32).reshape(1, 16)
B = np.full((1, 16), 3, dtype=np.int32)


@contextmanager
def stub(url: str) -> Iterator[Any]:
    """The generated stub on its own channel: requests exactly as a test builds them."""
    with grpc.insecure_channel(url) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def reference(repository: Path, model: str, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Outputs of a direct onnxruntime run of the model file the server serves."""
    session = ort.InferenceSession(str(repository / model / "1" / "model.onnx"))
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs), strict=True))


def simple_request(request_id: str = "") -> Any:
    """A valid raw-contents ModelInferRequest for `simple` with inputs A and B."""
    message = service_pb2.ModelInferRequest(model_name="simple", id=request_id)
    for name in ("INPUT0", "INPUT1"):
        message.inputs.add(name=name, datatype="INT32", shape=[1, 16])
    message.raw_input_contents.extend([A.tobytes(), B.tobytes()])
    return message


def output(response: Any, name: str) -> np.ndarray:
    """One output of a ModelInferResponse, read from raw_output_contents."""
    for index, tensor in enumerate(response.outputs):
        if tensor.name == name:
            dtype = {"INT32": np.int32, "FP32": np.float32}[tensor.datatype]
            raw = response.raw_output_contents[index]
            return np.frombuffer(raw, dtype=dtype).reshape(list(tensor.shape))
    raise KeyError(name)


def assert_serving(url: str) -> None:
    """The server still answers a good inference correctly."""
    with stub(url) as service:
        response = service.ModelInfer(simple_request("still-serving"))
    assert response.id == "still-serving"
    np.testing.assert_array_equal(output(response, "OUTPUT0"), A + B)
