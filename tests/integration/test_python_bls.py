"""Business Logic Scripting: Python models calling other models of the same server (ONNX, an
ensemble, a sequence model, a decoupled model, other Python models) through the engine."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import generate_models  # examples/, put on the path by tests/conftest.py
from tests.integration.infer_helpers import infer_inputs
from tests.integration.model_files import write
from tests.integration.server import RunningServer, running_server
from tests.integration.test_cancellation import eventually

EXAMPLES = Path(__file__).parents[2] / "examples" / "model_repository"
CALLED = ("simple", "sequence_accumulate", "repeat", "pipeline")
PIPELINE = ("pipeline_preprocess", "pipeline_branch_a", "pipeline_branch_b", "pipeline_postprocess")

# Forwards each request to the model named by the config parameter `target` (inputs cast to
# `cast` when given, sequence id and flags passed on), and answers with its outputs or error.
FORWARD = """
import json
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        given = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.target = given["target"]
        self.cast = given.get("cast")
        self.timeout = int(given.get("timeout", 0))
        self.outputs = [o["name"] for o in config["output"]]

    def request(self, request):
        inputs = request.inputs()
        if self.cast:
            inputs = [pb_utils.Tensor(t.name(), t.as_numpy().astype(self.cast)) for t in inputs]
        return pb_utils.InferenceRequest(
            model_name=self.target,
            requested_output_names=self.outputs,
            inputs=inputs,
            correlation_id=request.correlation_id(),
            flags=request.flags(),
            timeout=self.timeout,
        )

    def execute(self, requests):
        return [answer(self.request(r).exec()) for r in requests]

def answer(response):
    if response.has_error():
        return pb_utils.InferenceResponse(error=response.error())
    return pb_utils.InferenceResponse(response.output_tensors())
"""

ASYNC_FORWARD = (
    FORWARD.replace("import json", "import asyncio\nimport json")
    .replace("    def execute(self, requests):", "    async def execute(self, requests):")
    .replace(
        "return [answer(self.request(r).exec()) for r in requests]",
        "calls = [self.request(r).async_exec() for r in requests]\n"
        "        return [answer(r) for r in await asyncio.gather(*calls)]",
    )
)

# Calls the decoupled `repeat` with TIMES=3 and answers how many responses carried outputs
# and the sum of their OUT.
STREAM = """
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            call = pb_utils.InferenceRequest(
                model_name="repeat",
                requested_output_names=["OUT"],
                inputs=[
                    pb_utils.Tensor("IN", values),
                    pb_utils.Tensor("TIMES", np.array([3], dtype=np.int32)),
                ],
            )
            count, total = 0, 0
            for response in call.exec(decoupled=True):
                if response.has_error():
                    raise pb_utils.TritonModelException(response.error().message())
                if response.output_tensors():
                    count += 1
                    out = pb_utils.get_output_tensor_by_name(response, "OUT")
                    total += int(out.as_numpy().sum())
            out = np.array([count, total], dtype=np.int32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", out)]))
        return responses
"""

# inferd's own interface: `await context.infer(...)`.
INFERD_FORWARD = """
class InferdModel:
    def initialize(self, context):
        self.context = context
        context.logger().info("will call simple")

    async def execute(self, batch):
        return await self.context.infer(
            "simple", batch.inputs, outputs=["OUTPUT0", "OUTPUT1"]
        )
"""

# `simple`'s inputs and outputs, as its config declares them.
_SIMPLE = generate_models.SIMPLE_CONFIG
# Answers after 2 s.
SLEEPY = """
import time

class InferdModel:
    def execute(self, batch):
        time.sleep(2)
        return {"OUTPUT0": batch.inputs["INPUT0"], "OUTPUT1": batch.inputs["INPUT1"]}
"""

# Runs its request until it is cancelled (30 s at most), then notes in the file named by the
# config parameter `marker` whether it saw the cancellation.
WATCHED = """
import time

class InferdModel:
    def initialize(self, context):
        self.marker = context.parameters["marker"]

    def execute(self, batch):
        request = batch.requests[0]
        deadline = time.monotonic() + 30
        while not request.is_cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)
        with open(self.marker, "a") as marker:
            marker.write("cancelled\\n" if request.is_cancelled() else "completed\\n")
        return {"OUTPUT0": batch.inputs["INPUT0"], "OUTPUT1": batch.inputs["INPUT1"]}
"""

# Without batching, so that a call finds it idle: adds its inputs (OUTPUT0), answers in OUTPUT1
# whether it ran on the thread of its caller's instance (`to_where`, in process), and fails
# when two of its executions overlap on its one instance.
WHERE = """
import threading
import time
import numpy as np

class InferdModel:
    def initialize(self, context):
        self.running = 0

    def execute(self, batch):
        self.running += 1
        try:
            if self.running > 1:
                raise RuntimeError("two executions at once on one instance")
            time.sleep(0.005)
            here = threading.current_thread().name.startswith("to_where")
            x, y = batch.inputs["INPUT0"], batch.inputs["INPUT1"]
            return {"OUTPUT0": x + y, "OUTPUT1": np.full_like(x, int(here))}
        finally:
            self.running -= 1
"""

SIMPLE_IO = _SIMPLE[_SIMPLE.index("input [") : _SIMPLE.index("instance_group")]
PIPELINE_IO = """
input [ { name: "RAW", data_type: TYPE_FP32, dims: [ 8 ] } ]
output [
  { name: "SCORES", data_type: TYPE_FP32, dims: [ 4 ] },
  { name: "LABEL", data_type: TYPE_INT32, dims: [ 1 ] }
]
"""
SEQUENCE_IO = """
input [ { name: "INPUT", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "OUTPUT", data_type: TYPE_INT32, dims: [ 1 ] } ]
"""
STREAM_IO = """
input [ { name: "IN", data_type: TYPE_INT32, dims: [ -1 ] } ]
output [ { name: "OUT", data_type: TYPE_INT32, dims: [ 2 ] } ]
"""


# An ensemble whose one step is `to_loop`, which calls this ensemble: a cycle through a step.
LOOP = (
    'name: "loop"\nplatform: "ensemble"\nmax_batch_size: 8\n'
    + SIMPLE_IO
    + """
ensemble_scheduling { step [ {
  model_name: "to_loop"
  model_version: -1
  input_map [ { key: "INPUT0", value: "INPUT0" }, { key: "INPUT1", value: "INPUT1" } ]
  output_map [ { key: "OUTPUT0", value: "OUTPUT0" }, { key: "OUTPUT1", value: "OUTPUT1" } ]
} ] }
"""
)


def _config(
    name: str, io: str, isolation: str, batch: int = 8, batching: bool = True, **given: str
) -> str:
    parameters = "".join(
        f'parameters {{ key: "{key}" value: {{ string_value: "{value}" }} }}\n'
        for key, value in {"isolation": isolation, **given}.items()
    )
    batching_block = "dynamic_batching { }" if batch and batching else ""
    return (
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: {batch}\n{io}\n{batching_block}\n'
        f"instance_group [ {{ count: 1, kind: KIND_CPU }} ]\n{parameters}"
    )


def _repository(root: Path, isolation: str) -> Path:
    for name in (*CALLED, *PIPELINE):
        shutil.copytree(EXAMPLES / name, root / name)
    models = {
        "to_simple": (FORWARD, SIMPLE_IO, {"target": "simple"}),
        "to_simple_async": (ASYNC_FORWARD, SIMPLE_IO, {"target": "simple"}),
        "to_simple_as_float": (FORWARD, SIMPLE_IO, {"target": "simple", "cast": "float32"}),
        "to_nowhere": (FORWARD, SIMPLE_IO, {"target": "nowhere"}),
        "to_pipeline": (FORWARD, PIPELINE_IO, {"target": "pipeline"}),
        "to_sequence": (FORWARD, SEQUENCE_IO, {"target": "sequence_accumulate"}),
        "to_itself": (FORWARD, SIMPLE_IO, {"target": "to_itself"}),
        "ping": (FORWARD, SIMPLE_IO, {"target": "pong"}),
        "pong": (FORWARD, SIMPLE_IO, {"target": "ping"}),
        "to_python": (FORWARD, SIMPLE_IO, {"target": "to_simple"}),
        "inferd_to_simple": (INFERD_FORWARD, SIMPLE_IO, {}),
        "to_loop": (FORWARD, SIMPLE_IO, {"target": "loop"}),
        "to_sleepy": (FORWARD, SIMPLE_IO, {"target": "sleepy", "timeout": "50000"}),
        "watched": (WATCHED, SIMPLE_IO, {"marker": str(root / "watched.seen")}),
        "to_watched": (FORWARD, SIMPLE_IO, {"target": "watched", "timeout": "200000"}),
        "to_watched_async": (ASYNC_FORWARD, SIMPLE_IO, {"target": "watched", "timeout": "200000"}),
    }
    for name, (code, io, given) in models.items():
        write(root, name, code, _config(name, io, isolation, **given))
    write(root, "to_repeat", STREAM, _config("to_repeat", STREAM_IO, isolation, batch=0))
    for name, code, given in (
        ("where", WHERE, {}),
        ("to_where", FORWARD, {"target": "where"}),
        # Idle when called, but a bounded call never runs on its caller's thread, which could
        # not stop waiting: the call times out all the same.
        ("sleepy", SLEEPY, {}),
    ):
        write(root, name, code, _config(name, SIMPLE_IO, isolation, batching=False, **given))
    (root / "loop" / "1").mkdir(parents=True)
    (root / "loop" / "config.pbtxt").write_text(LOOP)
    return root


@pytest.fixture(scope="module", params=["none", "process"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    isolation: str = request.param
    repository = _repository(tmp_path_factory.mktemp(f"bls_{isolation}"), isolation)
    # Dozens of models, each a worker process in process isolation: slow to start under load.
    with running_server(repository, timeout=180) as running:
        yield running


def _call(server: RunningServer, module: Any, model: str, arrays: dict[str, Any], **kw: Any) -> Any:
    url = server.http_url if module is httpclient else server.grpc_url
    client = module.InferenceServerClient(url)
    try:
        return client.infer(model, infer_inputs(module, arrays), **kw)
    finally:
        client.close()


def _in_parallel(one: Callable[[int], None]) -> None:
    """`one(seed)` for 48 seeds, 8 at a time."""
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(48)))


def _pair(seed: int, rows: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "INPUT0": rng.integers(-50, 50, (rows, 16), dtype=np.int32),
        "INPUT1": rng.integers(-50, 50, (rows, 16), dtype=np.int32),
    }


@pytest.mark.parametrize("model", ["to_simple", "to_simple_async", "to_python", "inferd_to_simple"])
@pytest.mark.parametrize("module", [httpclient, grpcclient], ids=["http", "grpc"])
def test_python_calls_onnx(server: RunningServer, module: Any, model: str) -> None:
    arrays = _pair(1, rows=2)
    result = _call(server, module, model, arrays)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), arrays["INPUT0"] + arrays["INPUT1"])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), arrays["INPUT0"] - arrays["INPUT1"])


def test_an_inferd_models_logger_is_named_by_the_model(server: RunningServer) -> None:
    assert "INFO inferd.model.inferd_to_simple: will call simple" in server.log_text()


def test_python_calls_an_ensemble_as_the_client_would(server: RunningServer) -> None:
    raw = np.random.default_rng(2).random((3, 8), dtype=np.float32)
    through = _call(server, httpclient, "to_pipeline", {"RAW": raw})
    direct = _call(server, httpclient, "pipeline", {"RAW": raw})
    np.testing.assert_allclose(through.as_numpy("SCORES"), direct.as_numpy("SCORES"), rtol=1e-6)
    np.testing.assert_array_equal(through.as_numpy("LABEL"), direct.as_numpy("LABEL"))


def test_python_calls_a_sequence_model_with_its_correlation_id_and_flags(
    server: RunningServer,
) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    sums = []
    try:
        for index, value in enumerate([3, 4, 5]):
            arrays = {"INPUT": np.array([[value]], dtype=np.int32)}
            result = client.infer(
                "to_sequence",
                infer_inputs(grpcclient, arrays),
                sequence_id=4242,
                sequence_start=index == 0,
                sequence_end=index == 2,
            )
            sums.append(int(result.as_numpy("OUTPUT")[0, 0]))
    finally:
        client.close()
    assert sums == [3, 7, 12]


def test_python_reads_a_decoupled_models_stream(server: RunningServer) -> None:
    values = np.array([1, 2, 3], dtype=np.int32)
    result = _call(server, grpcclient, "to_repeat", {"IN": values})
    assert result.as_numpy("OUT").tolist() == [3, 18]


@pytest.mark.parametrize(
    ("model", "http_status", "grpc_code", "text"),
    [
        ("to_nowhere", "404", "NOT_FOUND", "unknown model: 'nowhere'"),
        ("to_sleepy", "503", "UNAVAILABLE", "timed out after 0.05 s"),
        ("to_simple_as_float", "400", "INVALID_ARGUMENT", "INPUT0"),
        ("to_itself", "501", "UNIMPLEMENTED", "to_itself -> to_itself"),
        ("ping", "501", "UNIMPLEMENTED", "ping -> pong -> ping"),
        ("to_loop", "501", "UNIMPLEMENTED", "to_loop -> to_loop"),
    ],
)
def test_a_failed_call_is_the_callers_error_object_and_the_server_stays_up(
    server: RunningServer, model: str, http_status: str, grpc_code: str, text: str
) -> None:
    for module, status in ((httpclient, http_status), (grpcclient, f"StatusCode.{grpc_code}")):
        with pytest.raises(InferenceServerException) as caught:
            _call(server, module, model, _pair(3))
        assert caught.value.status() == status
        assert text in str(caught.value.message())
    arrays = _pair(4)
    result = _call(server, httpclient, "to_simple", arrays)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), arrays["INPUT0"] + arrays["INPUT1"])


def test_concurrent_calls_through_one_instance_each_get_their_own_rows(
    server: RunningServer,
) -> None:
    def one(seed: int) -> None:
        model = ("to_simple", "to_simple_async", "to_python", "to_itself")[seed % 4]
        arrays = _pair(seed, rows=1 + seed % 3)
        try:
            result = _call(server, httpclient, model, arrays)
        except InferenceServerException as exc:
            assert model == "to_itself" and exc.status() == "501"
            return
        expected = arrays["INPUT0"] + arrays["INPUT1"]
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), expected)

    _in_parallel(one)


def test_a_call_to_an_idle_model_runs_on_its_callers_thread_one_at_a_time(
    server: RunningServer,
) -> None:
    """In process, the caller's thread runs a model that does not batch when its instance is
    idle; from a worker process, the call crosses to the server. Either way, client requests
    and calls never run two at once on its one instance."""
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        config = client.get_model_config("where")
    finally:
        client.close()
    here = _call(server, httpclient, "to_where", _pair(7)).as_numpy("OUTPUT1")
    assert (
        here.all()
        if config["parameters"]["isolation"]["string_value"] == "none"
        else not here.any()
    )

    def one(seed: int) -> None:
        arrays = _pair(seed)
        result = _call(server, httpclient, ("to_where", "where")[seed % 2], arrays)
        expected = arrays["INPUT0"] + arrays["INPUT1"]
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), expected)

    _in_parallel(one)


def test_calls_count_in_the_called_models_statistics(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    try:

        def count() -> int:
            stats = client.get_inference_statistics("simple")["model_stats"][0]
            return int(stats["inference_stats"]["success"]["count"])

        before = count()
        _call(server, httpclient, "to_simple", _pair(5))
        assert count() == before + 1
    finally:
        client.close()


@pytest.mark.parametrize("caller", ["to_watched", "to_watched_async"])
def test_a_call_that_times_out_is_cancelled_in_the_called_model(
    server: RunningServer, caller: str
) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        config = client.get_model_config("watched")
        marker = Path(config["parameters"]["marker"]["string_value"])
        before = marker.read_text().splitlines() if marker.exists() else []
        with pytest.raises(InferenceServerException) as caught:
            _call(server, httpclient, caller, _pair(6))
        assert caught.value.status() == "503"
        assert "timed out after 0.2 s" in str(caught.value.message())
        # The called model saw its request cancelled (it would otherwise run for 30 s and note
        # "completed"), and its statistics count it failed, not successful.
        eventually(lambda: marker.exists() and len(marker.read_text().splitlines()) > len(before))
        assert marker.read_text().splitlines()[len(before) :] == ["cancelled"]
        stats = client.get_inference_statistics("watched")["model_stats"][0]["inference_stats"]
        assert stats["success"]["count"] == 0
    finally:
        client.close()
