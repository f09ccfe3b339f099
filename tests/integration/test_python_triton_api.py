"""Triton's `triton_python_backend_utils` as Triton's models use it, in both isolation modes:
`Logger` into the server's log, `TritonError` codes as HTTP statuses and gRPC codes, a failing
`initialize`, and the rest of the request / tensor surface."""

from __future__ import annotations

import importlib.util
import json
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from tests.integration.http_helpers import post_json
from tests.integration.infer_helpers import infer, infer_inputs
from tests.integration.model_files import write
from tests.integration.server import RunningServer, running_server

LOGGING = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        pb_utils.Logger.log_info(f"initialized from {args['model_name']}")

    def execute(self, requests):
        logger = pb_utils.Logger
        logger.log_info("info line")
        logger.log_warn("warn line")
        logger.log_error("error line")
        logger.log_verbose("verbose line")
        logger.log("explicit warning line", logger.WARNING)
        logger.log("explicit info line", pb_utils.LogLevel.INFO)
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("OUT", r.inputs()[0].as_numpy())])
            for r in requests
        ]
"""

# CODE picks the TritonError code; RAISE (0/1) returns it in the response or raises it; code
# -1 raises TritonModelException.
CODED = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            code = int(pb_utils.get_input_tensor_by_name(request, "CODE").as_numpy()[0])
            raised = bool(pb_utils.get_input_tensor_by_name(request, "RAISE").as_numpy()[0])
            if code < 0:
                raise pb_utils.TritonModelException("model broke")
            error = pb_utils.TritonError(f"coded {code}", code)
            if raised:
                raise error
            responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
        return responses
"""

BROKEN_INIT = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        raise pb_utils.TritonModelException("no weights in " + args["model_repository"])

    def execute(self, requests):
        return []
"""

# Answers, as JSON, what the request and tensor API says.
SURFACE = """
import json
import os
import numpy as np
import torch
import torch.utils.dlpack
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.paths = [
            os.path.isfile(
                os.path.join(args["model_repository"], args["model_version"], "model.py")
            ),
            pb_utils.get_output_config_by_name(config, "OUT")["data_type"],
            pb_utils.get_input_config_by_name(config, "IN")["dims"],
        ]

    def execute(self, requests):
        responses = []
        for request in requests:
            tensor = pb_utils.get_input_tensor_by_name(request, "IN")
            from_torch = pb_utils.Tensor.from_dlpack("T", torch.arange(3, dtype=torch.float32))
            to_torch = torch.utils.dlpack.from_dlpack(tensor.to_dlpack())
            from_numpy = pb_utils.Tensor.from_dlpack("N", np.ones(2, dtype=np.int64))
            try:
                pb_utils.load_model("other")
                missing = "none"
            except NotImplementedError as exc:
                missing = str(exc) * (not hasattr(pb_utils, "load_model"))
            try:
                pb_utils.no_such_helper
            except AttributeError as exc:
                unknown = str(exc)
            facts = {
                "paths": self.paths,
                "parameters": json.loads(request.parameters()),
                "requested": request.requested_output_names(),
                "flags": request.flags(),
                "correlation_id": request.correlation_id(),
                "is_cpu": tensor.is_cpu(),
                "from_torch": from_torch.as_numpy().tolist(),
                "to_torch": to_torch.tolist(),
                "from_numpy": from_numpy.as_numpy().tolist(),
                "missing": missing,
                "unknown": unknown,
            }
            out = np.array([json.dumps(facts).encode()], dtype=object)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out)]))
        return responses
"""

# Counts requests, sets a gauge to the last input's sum, observes it in a histogram.
METRICS = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        kinds = pb_utils.MetricFamily
        self.requests = kinds("demo_requests", "Requests seen", kinds.COUNTER).Metric(
            labels={"model": args["model_name"]}
        )
        self.last = kinds("demo_last_sum", "Sum of the last input", kinds.GAUGE).Metric()
        self.sums = kinds("demo_sums", "Input sums", kinds.HISTOGRAM).Metric(
            buckets=[1.0, 10.0]
        )

    def execute(self, requests):
        responses = []
        for request in requests:
            values = request.inputs()[0].as_numpy()
            self.requests.increment(1)
            self.last.set(float(values.sum()))
            self.sums.observe(float(values.sum()))
            seen = np.array([self.requests.value(), self.last.value()], dtype=np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", seen)]))
        return responses
"""


def _config(name: str, isolation: str, inputs: str, output: str) -> str:
    return (
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: 0\n'
        f"input [ {inputs} ]\noutput [ {output} ]\n"
        f'parameters {{ key: "isolation" value: {{ string_value: "{isolation}" }} }}\n'
    )


FP32_IO = (
    '{ name: "IN", data_type: TYPE_FP32, dims: [ 2 ] }',
    '{ name: "OUT", data_type: TYPE_FP32, dims: [ 2 ] }',
)
CODED_IO = (
    '{ name: "CODE", data_type: TYPE_INT32, dims: [ 1 ] }, '
    '{ name: "RAISE", data_type: TYPE_INT32, dims: [ 1 ] }',
    '{ name: "OUT", data_type: TYPE_FP32, dims: [ 1 ] }',
)
SURFACE_IO = (
    '{ name: "IN", data_type: TYPE_FP32, dims: [ 2 ] }',
    '{ name: "OUT", data_type: TYPE_STRING, dims: [ 1 ] }',
)


@pytest.fixture(scope="module", params=["none", "process"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    isolation: str = request.param
    repository = tmp_path_factory.mktemp(f"triton_api_{isolation}")
    write(repository, "logging", LOGGING, _config("logging", isolation, *FP32_IO))
    write(repository, "coded", CODED, _config("coded", isolation, *CODED_IO))
    write(repository, "broken_init", BROKEN_INIT, _config("broken_init", isolation, *FP32_IO))
    if importlib.util.find_spec("torch") is not None:  # the surface model exchanges with torch
        write(repository, "surface", SURFACE, _config("surface", isolation, *SURFACE_IO))
    write(repository, "metrics", METRICS, _config("metrics", isolation, *FP32_IO))
    with running_server(repository, "--no-strict-readiness") as running:
        yield running


def test_logger_lines_reach_the_server_log_named_by_the_model(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        infer(client, httpclient, "logging", {"IN": np.ones(2, dtype=np.float32)})
    finally:
        client.close()
    server.count_logged("inferd.model.logging: explicit info line", 1)  # its last line
    lines = server.log_text().splitlines()

    def logged(level: str, text: str) -> bool:
        return any(f"{level} inferd.model.logging: {text}" in line for line in lines)

    assert logged("INFO", "initialized from logging")
    assert logged("INFO", "info line")
    assert logged("WARNING", "warn line")
    assert logged("ERROR", "error line")
    assert logged("WARNING", "explicit warning line")
    assert logged("INFO", "explicit info line")
    assert not any("verbose line" in line for line in lines)  # DEBUG, below --log-level info


# Triton's code -> (HTTP status, gRPC code) as inferd answers. Triton's own HTTP server gives
# 400 for UNKNOWN and ALREADY_EXISTS (and gRPC UNKNOWN for UNKNOWN); see docs/python_backend.md.
CODES = [
    (0, "500", "INTERNAL"),
    (1, "500", "INTERNAL"),
    (2, "404", "NOT_FOUND"),
    (3, "400", "INVALID_ARGUMENT"),
    (4, "503", "UNAVAILABLE"),
    (5, "501", "UNIMPLEMENTED"),
    (6, "409", "ALREADY_EXISTS"),
    (7, "400", "CANCELLED"),
]


def _coded(
    server: RunningServer, module: object, code: int, raised: bool
) -> InferenceServerException:
    url = server.http_url if module is httpclient else server.grpc_url
    client = module.InferenceServerClient(url)  # type: ignore[attr-defined]
    arrays = {
        "CODE": np.array([code], dtype=np.int32),
        "RAISE": np.array([int(raised)], dtype=np.int32),
    }
    try:
        with pytest.raises(InferenceServerException) as caught:
            client.infer("coded", infer_inputs(module, arrays))  # type: ignore[arg-type]
    finally:
        client.close()
    return caught.value


@pytest.mark.parametrize("raised", [False, True], ids=["returned", "raised"])
@pytest.mark.parametrize(("code", "http_status", "grpc_code"), CODES)
def test_triton_error_codes_map_to_statuses(
    server: RunningServer, code: int, http_status: str, grpc_code: str, raised: bool
) -> None:
    over_http = _coded(server, httpclient, code, raised)
    assert over_http.status() == http_status
    assert f"coded {code}" in str(over_http.message())
    over_grpc = _coded(server, grpcclient, code, raised)
    assert over_grpc.status() == f"StatusCode.{grpc_code}"
    assert f"coded {code}" in str(over_grpc.message())


def test_triton_model_exception_is_internal(server: RunningServer) -> None:
    error = _coded(server, grpcclient, -1, True)
    assert error.status() == "StatusCode.INTERNAL"
    assert "TritonModelException: model broke" in str(error.message())


def test_initialize_that_raises_leaves_the_model_unavailable_with_the_message(
    server: RunningServer,
) -> None:
    status, rows = post_json(server.http_port, "/v2/repository/index", {})
    assert status == 200
    row = next(r for r in rows if r["name"] == "broken_init")
    assert row["state"] == "UNAVAILABLE"
    assert "TritonModelException: no weights in" in row["reason"]
    for module, url, status in (
        (grpcclient, server.grpc_url, "StatusCode.UNAVAILABLE"),
        (httpclient, server.http_url, "503"),
    ):
        client = module.InferenceServerClient(url)
        try:
            with pytest.raises(InferenceServerException) as caught:
                infer(client, module, "broken_init", {"IN": np.ones(2, dtype=np.float32)})
        finally:
            client.close()
        assert caught.value.status() == status


def test_request_and_tensor_surface(server: RunningServer) -> None:
    pytest.importorskip("torch")
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        inputs = infer_inputs(httpclient, {"IN": np.array([1.5, 2.5], dtype=np.float32)})
        result = client.infer(
            "surface",
            inputs,
            outputs=[httpclient.InferRequestedOutput("OUT")],
            parameters={"color": "blue", "size": 3},
        )
    finally:
        client.close()
    facts = json.loads(result.as_numpy("OUT")[0])
    assert facts["paths"] == [True, "TYPE_STRING", [2]]
    assert facts["parameters"] == {"color": "blue", "size": 3}
    assert facts["requested"] == ["OUT"]
    assert facts["flags"] == 0
    assert facts["correlation_id"] == 0
    assert facts["is_cpu"] is True
    assert facts["from_torch"] == [0.0, 1.0, 2.0]
    assert facts["to_torch"] == [1.5, 2.5]
    assert facts["from_numpy"] == [1, 1]
    assert "triton_python_backend_utils.load_model is not provided" in facts["missing"]
    assert "has no attribute 'no_such_helper'" in facts["unknown"]


def test_custom_metrics_are_exported_with_the_servers(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        for values in ([0.25, 0.25], [2.0, 3.0], [30.0, 1.0]):
            result = infer(client, httpclient, "metrics", {"IN": np.array(values, np.float32)})
    finally:
        client.close()
    assert result.as_numpy("OUT").tolist() == [3.0, 31.0]  # value() as the model sees it
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        text = response.read().decode()
    for line in (
        "# HELP demo_requests Requests seen",
        "# TYPE demo_requests counter",  # as Triton writes it: no `_total`
        'demo_requests{model="metrics"} 3.0',
        "# TYPE demo_last_sum gauge",
        "demo_last_sum 31.0",
        "# TYPE demo_sums histogram",
        'demo_sums_bucket{le="1.0"} 1.0',
        'demo_sums_bucket{le="10.0"} 2.0',
        'demo_sums_bucket{le="+Inf"} 3.0',
        "demo_sums_count 3.0",
        "demo_sums_sum 36.5",
        "# TYPE nv_inference_request_success untyped",  # the server's own, on the same page
    ):
        assert line in text.splitlines(), line
    # prometheus-client's parser reads the page, the counter as a counter (it adds `_total`).
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families["demo_requests"].type == "counter"
    assert [(s.name, s.value) for s in families["demo_requests"].samples] == [
        ("demo_requests_total", 3.0)
    ]
