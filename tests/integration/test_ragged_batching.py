"""Ragged batching through the real server and tritonclient (HTTP and gRPC): requests of
different lengths share one batch without padding, the model gets the batch inputs Triton
defines, batch outputs are scattered back by shape; configs that cannot be served are refused.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto, helper
from tritonclient.utils import InferenceServerException

import generate_models  # examples/, put on sys.path by tests/conftest.py
from tests.integration.classic_helpers import model_states
from tests.integration.infer_helpers import infer
from tests.integration.server import RunningServer, running_server

CLIENTS = pytest.mark.parametrize("module", [httpclient, grpcclient], ids=["http", "grpc"])

# SUM: each request's elements summed, found by the ends BATCH_ACCUMULATED_ELEMENT_COUNT gives;
# DOUBLE: the flattened batch doubled, scattered back in each request's shape.
SUM_CONFIG = """
backend: "onnxruntime"
max_batch_size: 4
input [ { name: "RAGGED", data_type: TYPE_FP32, dims: [ -1 ], allow_ragged_batch: true } ]
output [
  { name: "SUM", data_type: TYPE_FP32, dims: [ 1 ] },
  { name: "DOUBLE", data_type: TYPE_FP32, dims: [ -1 ] }
]
batch_input [ { kind: BATCH_ACCUMULATED_ELEMENT_COUNT, target_name: "INDEX",
                data_type: TYPE_INT32, source_input: "RAGGED" } ]
batch_output [ { target_name: "DOUBLE", kind: BATCH_SCATTER_WITH_INPUT_SHAPE,
                 source_input: "RAGGED" } ]
dynamic_batching { max_queue_delay_microseconds: 2000000 }
"""

CHECK_CONFIG = """
backend: "python"
max_batch_size: 4
input [
  { name: "RAGGED", data_type: TYPE_FP32, dims: [ -1, -1 ], allow_ragged_batch: true },
  { name: "FIXED", data_type: TYPE_FP32, dims: [ -1 ] }
]
output [
  { name: "ECHO", data_type: TYPE_FP32, dims: [ -1, -1 ] },
  { name: "REQUESTS", data_type: TYPE_INT32, dims: [ 1 ] }
]
batch_input [
  { kind: BATCH_ELEMENT_COUNT, target_name: "E", data_type: TYPE_INT32, source_input: "RAGGED" },
  { kind: BATCH_ACCUMULATED_ELEMENT_COUNT, target_name: "A", data_type: TYPE_FP32,
    source_input: "RAGGED" },
  { kind: BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO, target_name: "AZ", data_type: TYPE_INT32,
    source_input: "RAGGED" },
  { kind: BATCH_MAX_ELEMENT_COUNT_AS_SHAPE, target_name: "M", data_type: TYPE_INT32,
    source_input: "RAGGED" },
  { kind: BATCH_ITEM_SHAPE, target_name: "S", data_type: TYPE_INT32, source_input: "RAGGED" },
  { kind: BATCH_ITEM_SHAPE_FLATTEN, target_name: "SF", data_type: TYPE_FP32,
    source_input: "RAGGED" }
]
batch_output [ { target_name: "ECHO", kind: BATCH_SCATTER_WITH_INPUT_SHAPE,
                 source_input: "RAGGED" } ]
dynamic_batching { max_queue_delay_microseconds: 2000000 }
"""

# Computes what each batch input must hold from its requests' own inputs, and fails the batch
# when the server built one differently.
CHECK_MODEL = """
import math
import numpy as np

class InferdModel:
    def execute(self, batch):
        shapes = [r.inputs["RAGGED"].shape for r in batch.requests]
        counts = [math.prod(shape) for shape in shapes]
        ends = list(np.cumsum(counts))
        items = [list(shape[1:]) for shape in shapes for _ in range(shape[0])]
        expected = {
            "E": counts, "A": ends, "AZ": [0, *ends], "S": items,
            "SF": [d for item in items for d in item],
        }
        for name, values in expected.items():
            got = batch.inputs[name]
            if got.tolist() != np.asarray(values, dtype=got.dtype).tolist():
                raise ValueError(f"{name} is {got.tolist()}, expected {values}")
        if batch.inputs["M"].shape != (max(counts),):
            raise ValueError(f"M has shape {batch.inputs['M'].shape}")
        flat = np.concatenate([r.inputs["RAGGED"].reshape(-1) for r in batch.requests])
        if batch.inputs["RAGGED"].tolist() != flat.tolist():
            raise ValueError("RAGGED is not the requests' elements concatenated")
        rows = batch.requests[-1].end
        return {
            "ECHO": batch.inputs["RAGGED"] * 2,
            "REQUESTS": np.full((rows, 1), len(batch.requests), np.int32),
        }
"""

ISOLATED = 'parameters { key: "isolation" value: { string_value: "process" } }\n'

TORCH_CONFIG = """
backend: "pytorch"
max_batch_size: 4
input [ { name: "RAGGED", data_type: TYPE_FP32, dims: [ -1 ], allow_ragged_batch: true } ]
output [ { name: "SUM", data_type: TYPE_FP32, dims: [ 1 ] } ]
batch_input [ { kind: BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO, target_name: "INDEX",
                data_type: TYPE_INT32, source_input: "RAGGED" } ]
dynamic_batching { max_queue_delay_microseconds: 2000000 }
"""


def _sum_model(path: Path) -> None:
    """SUM[i] = cumsum(RAGGED)[INDEX[i] - 1] - cumsum(RAGGED)[INDEX[i - 1] - 1]."""
    constant = helper.make_node
    nodes = [
        constant(
            "Constant", [], ["axis"], value=helper.make_tensor("a", TensorProto.INT64, [], [0])
        ),
        constant(
            "Constant", [], ["one"], value=helper.make_tensor("o", TensorProto.INT64, [1], [1])
        ),
        constant(
            "Constant", [], ["zero"], value=helper.make_tensor("z", TensorProto.FLOAT, [1], [0])
        ),
        constant(
            "Constant", [], ["two"], value=helper.make_tensor("t", TensorProto.FLOAT, [1], [2])
        ),
        constant(
            "Constant", [], ["col"], value=helper.make_tensor("c", TensorProto.INT64, [2], [-1, 1])
        ),
        constant(
            "Constant", [], ["start"], value=helper.make_tensor("s", TensorProto.INT64, [1], [0])
        ),
        constant(
            "Constant", [], ["stop"], value=helper.make_tensor("e", TensorProto.INT64, [1], [-1])
        ),
        constant("CumSum", ["RAGGED", "axis"], ["running"]),
        constant("Cast", ["INDEX"], ["index"], to=TensorProto.INT64),
        constant("Sub", ["index", "one"], ["last"]),
        constant("Gather", ["running", "last"], ["ends"], axis=0),
        constant("Concat", ["zero", "ends"], ["padded"], axis=0),
        constant("Slice", ["padded", "start", "stop"], ["starts"]),
        constant("Sub", ["ends", "starts"], ["sums"]),
        constant("Reshape", ["sums", "col"], ["SUM"]),
        constant("Mul", ["RAGGED", "two"], ["DOUBLE"]),
    ]
    graph = helper.make_graph(
        nodes,
        "ragged_sum",
        [
            helper.make_tensor_value_info("RAGGED", TensorProto.FLOAT, ["n"]),
            helper.make_tensor_value_info("INDEX", TensorProto.INT32, ["m"]),
        ],
        [
            helper.make_tensor_value_info("SUM", TensorProto.FLOAT, ["m", 1]),
            helper.make_tensor_value_info("DOUBLE", TensorProto.FLOAT, ["n"]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", generate_models.OPSET)])
    model.ir_version = generate_models.IR_VERSION
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def _check_model(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CHECK_MODEL)


def _torch_model(model_dir: Path) -> bool:
    try:
        import torch

        from tests.pytorch_models import save_torchscript
    except ImportError:
        return False

    class Sum(torch.nn.Module):
        def forward(self, RAGGED, INDEX):  # unannotated: TorchScript takes them as Tensors
            running = torch.cat([torch.zeros(1), torch.cumsum(RAGGED, 0)])
            index = INDEX.long()
            return (running[index[1:]] - running[index[:-1]]).reshape(-1, 1)

    save_torchscript(model_dir, Sum(), f'name: "{model_dir.name}"\n{TORCH_CONFIG}')
    return True


def _sklearn_model(path: Path) -> None:
    """A fitted regression, when the sklearn extra is installed (the server needs it too)."""
    try:
        import joblib
        from sklearn.linear_model import LinearRegression
    except ImportError:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(LinearRegression().fit([[0.0, 1.0], [1.0, 0.0]], [0.0, 1.0]), path)


REFUSED = {
    # (config, what writes its model file, what the reason says)
    "on_sklearn": (
        """backend: "sklearn"
        max_batch_size: 4
        input [ { name: "input__0", data_type: TYPE_FP32, dims: [ 2 ],
                  allow_ragged_batch: true } ]
        dynamic_batching { }""",
        _sklearn_model,
        "cannot take a ragged batch",
    ),
    "without_batching": (
        SUM_CONFIG.replace("max_batch_size: 4", "max_batch_size: 0").replace(
            "dynamic_batching { max_queue_delay_microseconds: 2000000 }", ""
        ),
        _sum_model,
        "max_batch_size 0",
    ),
    "int64_index": (
        SUM_CONFIG.replace("data_type: TYPE_INT32", "data_type: TYPE_INT64"),
        _sum_model,
        "batch input data type must be TYPE_INT32 or TYPE_FP32",
    ),
    "unknown_target": (
        SUM_CONFIG.replace('target_name: "INDEX"', 'target_name: "OFFSETS"'),
        _sum_model,
        "batch_input targets ['OFFSETS'] are not inputs of the ONNX model",
    ),
}


def _write(root: Path, name: str, config: str, files: dict[str, Any]) -> None:
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / "config.pbtxt").write_text(f'name: "{name}"\n{textwrap.dedent(config)}')
    for file_name, write in files.items():
        write(root / name / "1" / file_name)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("ragged")
    _write(root, "ragged_sum", SUM_CONFIG, {"model.onnx": _sum_model})
    for name, extra in (("ragged_check", ""), ("ragged_check_isolated", ISOLATED)):
        _write(root, name, CHECK_CONFIG + extra, {"model.py": _check_model})
    _torch_model(root / "ragged_torch")
    for name, (config, write, _) in REFUSED.items():
        file_name = "model.onnx" if write is _sum_model else "model.joblib"
        _write(root, name, config, {file_name: write})
    with running_server(root, "--no-strict-readiness") as running:
        yield running


def _client(server: RunningServer, module: ModuleType) -> Any:
    return module.InferenceServerClient(
        server.http_url if module is httpclient else server.grpc_url
    )


def _counts(server: RunningServer, model: str) -> tuple[int, int]:
    stats = httpclient.InferenceServerClient(server.http_url).get_inference_statistics(model)
    row = stats["model_stats"][0]
    return int(row["inference_count"]), int(row["execution_count"])


def _concurrently(
    server: RunningServer, module: ModuleType, model: str, requests: list[dict[str, np.ndarray]]
) -> list[Any]:
    """Sends `requests` at once, one client each; returns the results in order."""

    def send(arrays: dict[str, np.ndarray]) -> Any:
        client = _client(server, module)
        try:
            return infer(client, module, model, arrays)
        finally:
            client.close()

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(send, requests))


@CLIENTS
def test_requests_of_different_lengths_share_one_batch(
    server: RunningServer, module: ModuleType
) -> None:
    lengths = [2, 4, 1, 3]  # qa/L0_batch_input's
    sent = [{"RAGGED": np.arange(n, dtype=np.float32).reshape(1, n) + n} for n in lengths]
    inferences, executions = _counts(server, "ragged_sum")
    results = _concurrently(server, module, "ragged_sum", sent)
    for arrays, result in zip(sent, results, strict=True):
        ragged = arrays["RAGGED"]
        np.testing.assert_allclose(result.as_numpy("SUM"), [[ragged.sum()]])
        np.testing.assert_array_equal(result.as_numpy("DOUBLE"), ragged * 2)
    # max_batch_size 4: the four requests fill one batch, which runs at once.
    assert _counts(server, "ragged_sum") == (inferences + 4, executions + 1)


@CLIENTS
@pytest.mark.parametrize("model", ["ragged_check", "ragged_check_isolated"])
def test_a_python_model_gets_every_batch_input_as_triton_builds_it(
    server: RunningServer, module: ModuleType, model: str
) -> None:
    shapes = [(1, 2, 1), (2, 1, 3), (1, 3, 2)]  # 4 rows: a full batch
    sent = [
        {
            "RAGGED": np.arange(np.prod(shape), dtype=np.float32).reshape(shape),
            "FIXED": np.ones((shape[0], 3), np.float32),
        }
        for shape in shapes
    ]
    results = _concurrently(server, module, model, sent)
    for arrays, result in zip(sent, results, strict=True):
        np.testing.assert_array_equal(result.as_numpy("ECHO"), arrays["RAGGED"] * 2)
        rows = arrays["RAGGED"].shape[0]
        np.testing.assert_array_equal(result.as_numpy("REQUESTS"), np.full((rows, 1), 3))


def test_requests_whose_other_inputs_differ_in_shape_run_apart(server: RunningServer) -> None:
    sent = [
        {"RAGGED": np.ones((1, 1, n), np.float32), "FIXED": np.ones((1, width), np.float32)}
        for n, width in [(2, 3), (3, 5)]
    ]
    results = _concurrently(server, httpclient, "ragged_check", sent)
    assert [r.as_numpy("REQUESTS").tolist() for r in results] == [[[1]], [[1]]]


def test_a_torchscript_model_takes_the_flattened_batch(server: RunningServer) -> None:
    pytest.importorskip("torch")
    sent = [{"RAGGED": np.full((1, n), n, np.float32)} for n in (1, 2, 3, 4)]
    inferences, executions = _counts(server, "ragged_torch")
    results = _concurrently(server, grpcclient, "ragged_torch", sent)
    assert [r.as_numpy("SUM").tolist() for r in results] == [[[1.0]], [[4.0]], [[9.0]], [[16.0]]]
    assert _counts(server, "ragged_torch") == (inferences + 4, executions + 1)


def test_a_batch_input_is_no_input_a_client_sends(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    arrays = {"RAGGED": np.ones((1, 2), np.float32), "INDEX": np.array([2], np.int32)}
    with pytest.raises(
        InferenceServerException, match="unexpected inference input 'INDEX'"
    ) as info:
        infer(client, httpclient, "ragged_sum", arrays)
    assert info.value.status() == "400"


@pytest.mark.parametrize("model", sorted(REFUSED))
def test_configs_that_cannot_be_served_are_refused_with_the_reason(
    server: RunningServer, model: str
) -> None:
    if REFUSED[model][1] is _sklearn_model:
        pytest.importorskip("sklearn")
    state, reason = model_states(server)[model]
    assert state == "UNAVAILABLE"
    assert REFUSED[model][2] in reason
