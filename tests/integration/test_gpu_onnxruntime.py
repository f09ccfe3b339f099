"""ONNX Runtime on GPU instances (CUDA, and TensorRT when the config asks and ORT has it);
results equal ONNX Runtime on CPU. Skipped where ONNX Runtime has no CUDA provider."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import tritonclient.http as httpclient

import generate_models
from tests.integration.http_helpers import get_json
from tests.integration.server import RunningServer, running_server

PROVIDERS = onnxruntime.get_available_providers()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif("CUDAExecutionProvider" not in PROVIDERS, reason="no CUDA provider"),
]
SIZES = (8, 16, 4)
CONFIGS = {
    "mlp_cuda": "instance_group [ { kind: KIND_GPU, count: 2, gpus: [ 0 ] } ]\n",
    "mlp_ort_trt": (
        "instance_group [ { kind: KIND_GPU } ]\n"
        "optimization { execution_accelerators { gpu_execution_accelerator : "
        '[ { name : "tensorrt" } ] } }\n'
    ),
}


@pytest.fixture(scope="module")
def gpu_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path]]:
    repository = tmp_path_factory.mktemp("gpu-onnx")
    for name, config in CONFIGS.items():
        generate_models.mlp_model(repository / name / "1" / "model.onnx", SIZES)
        (repository / name / "config.pbtxt").write_text(config)
    with running_server(repository) as server:
        yield server, repository / "mlp_cuda" / "1" / "model.onnx"


@pytest.mark.parametrize("model", list(CONFIGS))
def test_gpu_instances_match_cpu(gpu_server: tuple[RunningServer, Path], model: str) -> None:
    if model == "mlp_ort_trt" and "TensorrtExecutionProvider" not in PROVIDERS:
        pytest.skip("this ONNX Runtime has no TensorRT provider")
    server, onnx_file = gpu_server
    _, metadata = get_json(server.http_port, f"/v2/models/{model}")
    assert {i["device"] for i in metadata["instances"]} == {"gpu:0"}
    x = np.random.default_rng(5).standard_normal((3, SIZES[0])).astype(np.float32)
    client = httpclient.InferenceServerClient(server.http_url)
    infer_input = httpclient.InferInput("input", list(x.shape), "FP32")
    infer_input.set_data_from_numpy(x)
    result = client.infer(model, [infer_input]).as_numpy("output")
    client.close()
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(result, session.run(None, {"input": x})[0], rtol=1e-3, atol=1e-3)
