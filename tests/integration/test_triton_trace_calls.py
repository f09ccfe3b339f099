"""A model's calls to other models (BLS) in Triton's trace files, on a running server: each call
is a trace of its own whose `parent_id` is the calling request's trace, whichever way it runs
(on the caller's thread, through the engine's queue, from a worker process) and whichever API
makes it (`pb_utils.InferenceRequest(...).exec()`, with or without `trace=request.trace()`,
or inferd's `context.infer`); a call made by a request that is not traced is not traced.
Triton's own case (qa/L0_trace, `bls_trace.log`) runs as its test does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.conftest import generate_models
from tests.integration.model_files import write
from tests.integration.server import RunningServer, running_server
from tests.integration.test_ensemble_add_sub import ENSEMBLE, ENSEMBLE_CONFIG
from tests.integration.test_triton_trace_files import names, traces
from tests.integration.test_triton_trace_files import trace_file as trace_file  # a fixture

# As Triton's qa/python_models/bls_simple: calls the model its MODEL_NAME input names with its
# two other inputs, passing its request's trace where the config parameter `with_trace` says.
TRITON_CALLER = """
import json

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.with_trace = config["parameters"]["with_trace"]["string_value"] == "yes"

    def execute(self, requests):
        responses = []
        for request in requests:
            name = pb_utils.get_input_tensor_by_name(request, "MODEL_NAME").as_numpy()[0]
            inputs = [pb_utils.get_input_tensor_by_name(request, n) for n in ("INPUT0", "INPUT1")]
            extra = {"trace": request.trace()} if self.with_trace else {}
            call = pb_utils.InferenceRequest(
                model_name=name.decode(),
                requested_output_names=["OUTPUT0", "OUTPUT1"],
                inputs=inputs,
                **extra,
            )
            answer = call.exec()
            if answer.has_error():
                raise pb_utils.TritonModelException(answer.error().message())
            responses.append(pb_utils.InferenceResponse(answer.output_tensors()))
        return responses
"""
# The same with inferd's own interface, awaited.
INFERD_CALLER = """
class InferdModel:
    def initialize(self, context):
        self.context = context

    async def execute(self, batch):
        name = batch.inputs["MODEL_NAME"][0].decode()
        inputs = {n: batch.inputs[n] for n in ("INPUT0", "INPUT1")}
        return await self.context.infer(name, inputs, outputs=["OUTPUT0", "OUTPUT1"])
"""
CALLER_CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [
  {{ name: "MODEL_NAME", data_type: TYPE_STRING, dims: [ 1 ] }},
  {{ name: "INPUT0", data_type: TYPE_INT32, dims: [ 1, 16 ] }},
  {{ name: "INPUT1", data_type: TYPE_INT32, dims: [ 1, 16 ] }}
]
output [
  {{ name: "OUTPUT0", data_type: TYPE_INT32, dims: [ 1, 16 ] }},
  {{ name: "OUTPUT1", data_type: TYPE_INT32, dims: [ 1, 16 ] }}
]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
parameters {{ key: "isolation" value: {{ string_value: "{isolation}" }} }}
parameters {{ key: "with_trace" value: {{ string_value: "{with_trace}" }} }}
"""
# Which way each caller's call to `simple` (which does not batch) runs.
CALLERS = {
    # On the caller's thread, on `simple`'s instance lent to it; the request's trace passed.
    "bls_here": (TRITON_CALLER, "none", "yes"),
    # From a worker process through the engine's queue, with and without the request's trace.
    "bls_simple": (TRITON_CALLER, "process", "yes"),
    "bls_process": (TRITON_CALLER, "process", "no"),
    # inferd's own call API, through the engine's queue.
    "bls_own": (INFERD_CALLER, "none", "no"),
}
# Triton's qa ensemble of one `simple` step (simple_onnx_int32_int32_int32).
ONE_STEP = ENSEMBLE_CONFIG.split("ensemble_scheduling")[0] + (
    'ensemble_scheduling { step [ { model_name: "simple" model_version: -1 '
    'input_map { key: "INPUT0" value: "INPUT0" } input_map { key: "INPUT1" value: "INPUT1" } '
    'output_map { key: "OUTPUT0" value: "OUTPUT0" } '
    'output_map { key: "OUTPUT1" value: "OUTPUT1" } } ] }\n'
)


def repository(root: Path) -> Path:
    generate_models.simple_model(root / "simple" / "1" / "model.onnx")
    (root / "simple" / "config.pbtxt").write_text(generate_models.SIMPLE_CONFIG)
    (root / ENSEMBLE / "1").mkdir(parents=True)
    (root / ENSEMBLE / "config.pbtxt").write_text(ONE_STEP)
    for name, (code, isolation, with_trace) in CALLERS.items():
        config = CALLER_CONFIG.format(name=name, isolation=isolation, with_trace=with_trace)
        write(root, name, code, config)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("trace_calls")


@pytest.fixture(scope="module")
def server(folder: Path) -> Iterator[RunningServer]:
    trace = ("level=TIMESTAMPS", "rate=1", f"triton,file={folder / 'start.json'}")
    flags = [arg for item in trace for arg in ("--trace-config", item)]
    with running_server(repository(folder / "models"), *flags) as up:
        yield up


def call(server: RunningServer, caller: str, called: str) -> None:
    inputs = [httpclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    for item in inputs:
        item.set_data_from_numpy(np.ones((1, 16), np.int32))
    inputs.append(httpclient.InferInput("MODEL_NAME", [1], "BYTES"))
    inputs[-1].set_data_from_numpy(np.array([called.encode()], dtype=np.object_))
    with closing(httpclient.InferenceServerClient(server.http_url)) as client:
        answer = client.infer(caller, inputs)
    assert (answer.as_numpy("OUTPUT0") == 2).all()


def by_model(written: dict[int, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The traces by model, one trace per model."""
    models = [trace["model_name"] for trace in written.values()]
    assert len(set(models)) == len(models), models
    return {trace["model_name"]: trace for trace in written.values()}


@pytest.mark.parametrize("caller", list(CALLERS))
def test_a_call_is_a_child_trace_of_its_caller(
    server: RunningServer, trace_file: Path, caller: str
) -> None:
    call(server, caller, "simple")
    written = by_model(traces(trace_file, 2))
    calling, called = written[caller], written["simple"]
    assert "parent_id" not in calling
    assert called["parent_id"] == calling["id"]
    assert called["id"] > calling["id"]  # numbered as it arrived, after its caller
    assert names(calling)[0] == "HTTP_RECV_START"
    assert names(called)[0] == "REQUEST_START"  # made in the server: no frontend marks


@pytest.mark.parametrize("caller", ["bls_here", "bls_own"])
def test_a_call_made_by_a_request_not_traced_is_not_traced(
    server: RunningServer, trace_file: Path, caller: str
) -> None:
    with closing(httpclient.InferenceServerClient(server.http_url)) as client:
        client.update_trace_settings(caller, {"trace_level": ["OFF"]})
        try:
            call(server, caller, "simple")  # `simple` itself is traced at rate 1
        finally:
            client.update_trace_settings(caller, {"trace_level": None})
    call(server, "bls_here", "simple")
    # The first two traces written are the second call's and its caller's.
    written = by_model(traces(trace_file, 2))
    assert written["simple"]["parent_id"] == written["bls_here"]["id"]


def test_tritons_bls_trace_case(tmp_path: Path) -> None:
    """qa/L0_trace's `bls_trace.log`: four requests of bls_simple calling the one-step
    ensemble, one in four traced (at most six): three traces, two of them children."""
    trace = tmp_path / "bls_trace.log"
    flags = (f"triton,file={trace}", "level=TIMESTAMPS", "rate=4", "count=6", "mode=triton")
    started = [arg for item in flags for arg in ("--trace-config", item)]
    with running_server(repository(tmp_path / "models"), *started) as up:
        for _ in range(4):
            call(up, "bls_simple", ENSEMBLE)
    text = trace.read_text()
    assert text.count("parent_id") == 2
    merged: dict[int, dict[str, Any]] = {}
    for item in json.loads(text):
        merged.setdefault(item["id"], {}).update(item)
    written = by_model(merged)
    assert set(written) == {"bls_simple", ENSEMBLE, "simple"}
    assert written[ENSEMBLE]["parent_id"] == written["bls_simple"]["id"]
    assert written["simple"]["parent_id"] == written[ENSEMBLE]["id"]
    computed = [m for m, t in written.items() if "COMPUTE_INPUT_END" in names(t)]
    assert sorted(computed) == ["bls_simple", "simple"]  # an ensemble computes nothing itself
