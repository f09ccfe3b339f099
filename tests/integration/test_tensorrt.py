"""TensorRT plans served end to end on a GPU: built here from the example ONNX models with the
TensorRT builder, checked against ONNX Runtime on CPU. Skipped without tensorrt and CUDA."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto
from tritonclient.utils import InferenceServerException

import generate_models
from tests.integration.http_helpers import get_json, post_json
from tests.integration.server import RunningServer, running_server

pytestmark = pytest.mark.gpu
trt = pytest.importorskip("tensorrt")
torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA device", allow_module_level=True)

Profile = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]
MLP_SIZES = (8, 16, 4)


def build_plan(onnx_file: Path, profile_shapes: Profile, plan_file: Path) -> None:
    """What `trtexec --onnx=... --minShapes=... --maxShapes=... --saveEngine=...` does."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_file.read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise RuntimeError(f"ONNX parser failed: {errors}")
    config = builder.create_builder_config()
    config.clear_flag(trt.BuilderFlag.TF32)  # full FP32, so results match ONNX Runtime closely
    profile = builder.create_optimization_profile()
    for name, (minimum, optimum, maximum) in profile_shapes.items():
        profile.set_shape(name, minimum, optimum, maximum)
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    assert plan is not None, "TensorRT failed to build the plan"
    plan_file.parent.mkdir(parents=True, exist_ok=True)
    plan_file.write_bytes(bytes(plan))


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("onnx")
    models = {"mlp": folder / "mlp.onnx", "simple": folder / "simple.onnx"}
    generate_models.mlp_model(models["mlp"], MLP_SIZES)
    generate_models.simple_model(models["simple"], TensorProto.INT32, width="width")
    return models


@pytest.fixture(scope="module")
def trt_server(
    onnx_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("trt-repository")
    mlp_profile: Profile = {"input": ((1, 8), (4, 8), (8, 8))}
    # No config: auto-completed from the plan (max_batch_size from the profile).
    build_plan(onnx_models["mlp"], mlp_profile, repository / "mlp_plan" / "1" / "model.plan")
    build_plan(onnx_models["mlp"], mlp_profile, repository / "mlp_two" / "1" / "model.plan")
    (repository / "mlp_two" / "config.pbtxt").write_text(
        'platform: "tensorrt_plan"\ninstance_group [ { kind: KIND_GPU, count: 2, gpus: [ 0 ] } ]\n'
    )
    build_plan(onnx_models["mlp"], mlp_profile, repository / "mlp_cpu" / "1" / "model.plan")
    (repository / "mlp_cpu" / "config.pbtxt").write_text("instance_group [ { kind: KIND_CPU } ]\n")
    width = ((1, 4), (2, 8), (4, 16))
    build_plan(
        onnx_models["simple"],
        {"INPUT0": width, "INPUT1": width},
        repository / "simple_plan" / "1" / "model.plan",
    )
    with running_server(repository) as server:
        yield server


def _reference(onnx_file: Path, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    return list(session.run(None, feed))


def test_plan_config_is_completed_from_the_engine(trt_server: RunningServer) -> None:
    status, config = get_json(trt_server.http_port, "/v2/models/mlp_plan/config")
    assert status == 200
    assert config["platform"] == "tensorrt_plan" and config["max_batch_size"] == 8
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("input", "TYPE_FP32", [MLP_SIZES[0]])
    ]


@pytest.mark.parametrize("client_module", [httpclient, grpcclient], ids=["http", "grpc"])
def test_plan_matches_onnxruntime(
    trt_server: RunningServer, onnx_models: dict[str, Path], client_module: object
) -> None:
    url = trt_server.http_url if client_module is httpclient else trt_server.grpc_url
    client = client_module.InferenceServerClient(url)  # type: ignore[attr-defined]
    x = np.random.default_rng(3).standard_normal((5, MLP_SIZES[0])).astype(np.float32)
    infer_input = client_module.InferInput("input", list(x.shape), "FP32")  # type: ignore[attr-defined]
    infer_input.set_data_from_numpy(x)
    result = client.infer("mlp_plan", [infer_input]).as_numpy("output")
    client.close()
    (expected,) = _reference(onnx_models["mlp"], {"input": x})
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-4)


def test_two_instances_serve_concurrently(
    trt_server: RunningServer, onnx_models: dict[str, Path]
) -> None:
    _, metadata = get_json(trt_server.http_port, "/v2/models/mlp_two")
    assert [i["device"] for i in metadata["instances"]] == ["gpu:0", "gpu:0"]
    rng = np.random.default_rng(4)
    batches = [rng.standard_normal((r, MLP_SIZES[0])).astype(np.float32) for r in (1, 3, 8) * 4]

    def infer(x: np.ndarray) -> np.ndarray:
        client = httpclient.InferenceServerClient(trt_server.http_url)
        infer_input = httpclient.InferInput("input", list(x.shape), "FP32")
        infer_input.set_data_from_numpy(x)
        try:
            out: np.ndarray = client.infer("mlp_two", [infer_input]).as_numpy("output")
        finally:
            client.close()
        return out

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(infer, batches))
    for x, result in zip(batches, results, strict=True):
        (expected,) = _reference(onnx_models["mlp"], {"input": x})
        np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-4)


def test_dynamic_width_within_and_outside_the_profile(trt_server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(trt_server.http_url)

    def infer(width: int) -> dict[str, np.ndarray]:
        a = np.arange(2 * width, dtype=np.int32).reshape(2, width)
        inputs = [httpclient.InferInput(n, [2, width], "INT32") for n in ("INPUT0", "INPUT1")]
        inputs[0].set_data_from_numpy(a)
        inputs[1].set_data_from_numpy(a * 3)
        result = client.infer("simple_plan", inputs)
        return {"sum": result.as_numpy("OUTPUT0"), "a": a}

    answer = infer(8)
    np.testing.assert_array_equal(answer["sum"], answer["a"] * 4)
    with pytest.raises(InferenceServerException, match="optimization profile") as caught:
        infer(32)
    assert caught.value.status() == "400"
    np.testing.assert_array_equal(infer(4)["sum"], infer(4)["a"] * 4)  # still serving
    client.close()


def test_kind_cpu_plan_is_unavailable_with_the_reason(trt_server: RunningServer) -> None:
    _, rows = post_json(trt_server.http_port, "/v2/repository/index", {})
    row = next(r for r in rows if r["name"] == "mlp_cpu")
    assert row["state"] == "UNAVAILABLE"
    assert "KIND_CPU" in row["reason"] and "KIND_GPU" in row["reason"]
