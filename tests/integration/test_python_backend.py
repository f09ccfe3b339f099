"""Python models served by the real server, in the server's process and in worker processes."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.infer_helpers import infer
from tests.integration.server import RunningServer, running_server

ADD_SUB = """
import numpy as np

class InferdModel:
    def initialize(self, context):
        self.scale = float(context.parameters.get("scale", "1"))

    def execute(self, batch):
        a, b = batch.inputs["INPUT0"], batch.inputs["INPUT1"]
        return {"OUTPUT0": (a + b) * self.scale, "OUTPUT1": a - b}
"""

# The list form: a negative first element is the client's fault, a NaN breaks the model.
PER_REQUEST = """
import math
from inferd.backends.python import InferenceError

class InferdModel:
    def execute(self, batch):
        answers = []
        for request in batch.requests:
            first = float(request.inputs["INPUT0"][0, 0])
            if first < 0:
                answers.append(InferenceError(f"negative input in request {request.id}"))
            elif math.isnan(first):
                answers.append(RuntimeError("cannot handle NaN"))
            else:
                a, b = request.inputs["INPUT0"], request.inputs["INPUT1"]
                answers.append({"OUTPUT0": a + b, "OUTPUT1": a - b})
        return answers
"""

ASYNC = """
import asyncio

class InferdModel:
    async def execute(self, batch):
        await asyncio.sleep(0.001)
        a, b = batch.inputs["INPUT0"], batch.inputs["INPUT1"]
        return {"OUTPUT0": a + b, "OUTPUT1": a - b}
"""

WRONG_OUTPUT = """
class InferdModel:
    def execute(self, batch):
        return {"OUTPUT0": batch.inputs["INPUT0"]}
"""

# Triton's python_backend examples/add_sub/model.py, as it is.
TRITON_ADD_SUB = """
import json
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.model_config = model_config = json.loads(args["model_config"])
        output0_config = pb_utils.get_output_config_by_name(model_config, "OUTPUT0")
        output1_config = pb_utils.get_output_config_by_name(model_config, "OUTPUT1")
        self.output0_dtype = pb_utils.triton_string_to_numpy(output0_config["data_type"])
        self.output1_dtype = pb_utils.triton_string_to_numpy(output1_config["data_type"])

    def execute(self, requests):
        output0_dtype = self.output0_dtype
        output1_dtype = self.output1_dtype
        responses = []
        for request in requests:
            in_0 = pb_utils.get_input_tensor_by_name(request, "INPUT0")
            in_1 = pb_utils.get_input_tensor_by_name(request, "INPUT1")
            out_0, out_1 = (
                in_0.as_numpy() + in_1.as_numpy(),
                in_0.as_numpy() - in_1.as_numpy(),
            )
            out_tensor_0 = pb_utils.Tensor("OUTPUT0", out_0.astype(output0_dtype))
            out_tensor_1 = pb_utils.Tensor("OUTPUT1", out_1.astype(output1_dtype))
            inference_response = pb_utils.InferenceResponse(
                output_tensors=[out_tensor_0, out_tensor_1]
            )
            responses.append(inference_response)
        return responses

    def finalize(self):
        print("Cleaning up...")
"""

# A Triton model whose config gives only its name and backend: auto_complete_config adds the
# rest. It answers errors Triton's ways: a negative input is an INVALID_ARG error response, a
# NaN another error response, and an input of 999 makes execute raise TritonError.
TRITON_AUTO_COMPLETE = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config):
        for name in ("INPUT0", "INPUT1"):
            auto_complete_model_config.add_input(
                {"name": name, "data_type": "TYPE_FP32", "dims": [4]}
            )
        for name in ("OUTPUT0", "OUTPUT1"):
            auto_complete_model_config.add_output(
                {"name": name, "data_type": "TYPE_FP32", "dims": [4]}
            )
        auto_complete_model_config.set_max_batch_size(8)
        auto_complete_model_config.set_dynamic_batching()
        return auto_complete_model_config

    def execute(self, requests):
        responses = []
        for request in requests:
            in_0 = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            in_1 = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            if (in_0 == 999).any():
                raise pb_utils.TritonError("999 refused")
            if (in_0 < 0).any():
                error = pb_utils.TritonError("negative input", pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
            elif np.isnan(in_0).any():
                error = pb_utils.TritonError("cannot handle NaN")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
            else:
                outputs = [
                    pb_utils.Tensor("OUTPUT0", in_0 + in_1),
                    pb_utils.Tensor("OUTPUT1", in_0 - in_1),
                ]
                responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
"""


def write_model(
    repository: Path,
    name: str,
    code: str,
    isolation: str,
    *,
    max_batch_size: int = 8,
    extra: str = "",
) -> None:
    version = repository / name / "1"
    version.mkdir(parents=True)
    (version / "model.py").write_text(textwrap.dedent(code))
    batching = "dynamic_batching { max_queue_delay_microseconds: 20000 }" if max_batch_size else ""
    (repository / name / "config.pbtxt").write_text(
        f"""
        name: "{name}"
        backend: "python"
        max_batch_size: {max_batch_size}
        input [
          {{ name: "INPUT0", data_type: TYPE_FP32, dims: [ 4 ] }},
          {{ name: "INPUT1", data_type: TYPE_FP32, dims: [ 4 ] }}
        ]
        output [
          {{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 4 ] }},
          {{ name: "OUTPUT1", data_type: TYPE_FP32, dims: [ 4 ] }}
        ]
        {batching}
        parameters {{ key: "isolation" value: {{ string_value: "{isolation}" }} }}
        {extra}
        """
    )


@pytest.fixture(scope="module", params=["none", "process"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    isolation: str = request.param
    repository = tmp_path_factory.mktemp(f"python_{isolation}")
    scale = 'parameters { key: "scale" value: { string_value: "10" } }'
    write_model(repository, "add_sub", ADD_SUB, isolation, extra=scale)
    write_model(repository, "per_request", PER_REQUEST, isolation)
    write_model(repository, "async", ASYNC, isolation)
    write_model(repository, "wrong_output", WRONG_OUTPUT, isolation)
    write_model(repository, "triton_add_sub", TRITON_ADD_SUB, isolation, max_batch_size=0)
    auto = repository / "triton_auto_complete"
    (auto / "1").mkdir(parents=True)
    (auto / "1" / "model.py").write_text(TRITON_AUTO_COMPLETE)
    (auto / "config.pbtxt").write_text(
        f'backend: "python"\nparameters {{ key: "isolation" value: {{ string_value: '
        f'"{isolation}" }} }}\n'
    )
    with running_server(repository) as running:
        yield running


def pair(seed: int, rows: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((rows, 4), dtype=np.float32), rng.random((rows, 4), dtype=np.float32)


def pair_infer(server: RunningServer, module: ModuleType, model: str, a: Any, b: Any) -> Any:
    """`model` called with INPUT0=a and INPUT1=b by a tritonclient HTTP or gRPC client, closed
    in this thread (tritonclient.http's gevent pool cannot be closed from another)."""
    url = server.http_url if module is httpclient else server.grpc_url
    client = module.InferenceServerClient(url)
    try:
        return infer(client, module, model, {"INPUT0": a, "INPUT1": b})
    finally:
        client.close()


def test_http_and_grpc_results_equal_numpy(server: RunningServer) -> None:
    a, b = pair(0, rows=3)
    http = pair_infer(server, httpclient, "add_sub", a, b)
    np.testing.assert_allclose(http.as_numpy("OUTPUT0"), (a + b) * 10, rtol=1e-6)
    np.testing.assert_allclose(http.as_numpy("OUTPUT1"), a - b, rtol=1e-6)
    grpc = pair_infer(server, grpcclient, "add_sub", a, b)
    np.testing.assert_allclose(grpc.as_numpy("OUTPUT0"), (a + b) * 10, rtol=1e-6)
    np.testing.assert_allclose(grpc.as_numpy("OUTPUT1"), a - b, rtol=1e-6)


@pytest.mark.parametrize("model", ["add_sub", "async"])
def test_concurrent_clients_each_get_their_own_rows(server: RunningServer, model: str) -> None:
    scale = 10 if model == "add_sub" else 1

    def one(seed: int) -> None:
        a, b = pair(seed, rows=1 + seed % 3)
        result = pair_infer(server, httpclient, model, a, b)
        np.testing.assert_allclose(result.as_numpy("OUTPUT0"), (a + b) * scale, rtol=1e-6)
        np.testing.assert_allclose(result.as_numpy("OUTPUT1"), a - b, rtol=1e-6)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(32)))


def test_list_form_fails_only_the_bad_request(server: RunningServer) -> None:
    def one(seed: int) -> str:
        a, b = pair(seed)
        if seed == 3:
            a[0, 0] = -1
        elif seed == 5:
            a[0, 0] = np.nan
        try:
            result = pair_infer(server, httpclient, "per_request", a, b)
        except InferenceServerException as exc:
            return f"{exc.status()} {exc.message()}"
        np.testing.assert_allclose(result.as_numpy("OUTPUT0"), a + b, rtol=1e-6)
        return "ok"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(one, range(8)))
    assert outcomes[3].startswith("400") and "negative input" in outcomes[3]
    assert outcomes[5].startswith("500") and "cannot handle NaN" in outcomes[5]
    assert [o for i, o in enumerate(outcomes) if i not in (3, 5)] == ["ok"] * 6


def test_list_form_error_over_grpc_is_invalid_argument(server: RunningServer) -> None:
    a, b = pair(1)
    a[0, 0] = -2
    with pytest.raises(InferenceServerException) as caught:
        pair_infer(server, grpcclient, "per_request", a, b)
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "negative input" in str(caught.value.message())


def test_a_missing_output_is_a_model_error_naming_it(server: RunningServer) -> None:
    a, b = pair(2)
    with pytest.raises(InferenceServerException) as caught:
        pair_infer(server, httpclient, "wrong_output", a, b)
    assert caught.value.status() == "500"
    assert "did not return output 'OUTPUT1'" in str(caught.value.message())
    pair_infer(server, httpclient, "add_sub", a, b)  # still serving


def test_triton_add_sub_model_runs_unchanged(server: RunningServer) -> None:
    rng = np.random.default_rng(7)
    a, b = rng.random(4, dtype=np.float32), rng.random(4, dtype=np.float32)
    for result in (
        pair_infer(server, httpclient, "triton_add_sub", a, b),
        pair_infer(server, grpcclient, "triton_add_sub", a, b),
    ):
        np.testing.assert_allclose(result.as_numpy("OUTPUT0"), a + b, rtol=1e-6)
        np.testing.assert_allclose(result.as_numpy("OUTPUT1"), a - b, rtol=1e-6)


def test_auto_complete_config_of_a_triton_model_fills_its_config(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        config = client.get_model_config("triton_auto_complete")
    finally:
        client.close()
    a, b = pair(8, rows=3)
    result = pair_infer(server, httpclient, "triton_auto_complete", a, b)
    assert config["max_batch_size"] == 8
    assert "dynamic_batching" in config
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("INPUT0", "TYPE_FP32", [4]),
        ("INPUT1", "TYPE_FP32", [4]),
    ]
    assert [t["name"] for t in config["output"]] == ["OUTPUT0", "OUTPUT1"]
    np.testing.assert_allclose(result.as_numpy("OUTPUT0"), a + b, rtol=1e-6)
    np.testing.assert_allclose(result.as_numpy("OUTPUT1"), a - b, rtol=1e-6)


@pytest.mark.parametrize(
    ("first", "status", "message"),
    [
        (-1.0, "400", "negative input"),  # error response with TritonError.INVALID_ARG
        (np.nan, "500", "cannot handle NaN"),  # error response with another code
        (999.0, "500", "TritonError: 999 refused"),  # TritonError raised from execute
    ],
)
def test_triton_errors_map_to_http_statuses(
    server: RunningServer, first: float, status: str, message: str
) -> None:
    a, b = pair(9)
    a[0, 0] = first
    with pytest.raises(InferenceServerException) as caught:
        pair_infer(server, httpclient, "triton_auto_complete", a, b)
    assert caught.value.status() == status
    assert message in str(caught.value.message())
    a, b = pair(10)
    result = pair_infer(server, httpclient, "triton_auto_complete", a, b)  # still serving
    np.testing.assert_allclose(result.as_numpy("OUTPUT0"), a + b, rtol=1e-6)
