"""The response cache through the real server and tritonclient (HTTP and gRPC): hits and
misses counted in the statistics extension and /metrics by exactly the requests sent, hits
answered without running the model and identical to the first answer, errors never cached,
requested-output subsets and shared-memory outputs answered right on a hit, sequence and
decoupled models refused as Triton refuses them, ensembles cached at the top and per step,
and no cache at all without --cache-config."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

import generate_models  # examples/, put on sys.path by tests/conftest.py
from tests.integration.classic_helpers import model_states
from tests.integration.model_files import write
from tests.integration.server import RunningServer, running_server
from tests.integration.test_statistics_metrics import scrape

CACHE = "response_cache { enable: true }\n"

# Y = 2 X, and RUN: how many requests this instance has run (so a hit shows as an old count);
# a negative first element is the client's error.
COUNTED = """
import numpy as np
from inferd.backends.python import InferenceError

class InferdModel:
    def initialize(self, context):
        self.runs = 0

    def execute(self, batch):
        answers = []
        for request in batch.requests:
            x = request.inputs["X"]
            if x[0, 0] < 0:
                answers.append(InferenceError("negative input"))
                continue
            self.runs += 1
            runs = np.full((len(x), 1), self.runs, dtype=np.int64)
            answers.append({"Y": x * 2, "RUN": runs})
        return answers
"""

PLUS_ONE = """
class InferdModel:
    def execute(self, batch):
        return {"Y": batch.inputs["X"] + 1}
"""

DECOUPLED = """
class InferdModel:
    def execute(self, batch):
        for request in batch.requests:
            request.sender.send({"Y": request.inputs["X"]}, final=True)
"""


def _config(name: str, extra: str = "", outputs: str = "RUN") -> str:
    run = ', { name: "RUN", data_type: TYPE_INT64, dims: [ 1 ] }' if outputs == "RUN" else ""
    return f"""
name: "{name}"
backend: "python"
max_batch_size: 8
input [ {{ name: "X", data_type: TYPE_FP32, dims: [ 4 ] }} ]
output [ {{ name: "Y", data_type: TYPE_FP32, dims: [ 4 ] }}{run} ]
{extra}
"""


def _ensemble(name: str, extra: str = "") -> str:
    step = (
        '{{ model_name: "{model}" model_version: -1 input_map {{ key: "X" value: "{source}" }} '
        'output_map {{ key: "Y" value: "{target}" }} }}'
    )
    steps = ", ".join(
        [
            step.format(model="counted", source="X", target="mid"),
            step.format(model="plus_one", source="mid", target="Z"),
        ]
    )
    return f"""
name: "{name}"
platform: "ensemble"
max_batch_size: 8
input [ {{ name: "X", data_type: TYPE_FP32, dims: [ 4 ] }} ]
output [ {{ name: "Z", data_type: TYPE_FP32, dims: [ 4 ] }} ]
ensemble_scheduling {{ step [ {steps} ] }}
{extra}
"""


def _repository(repository: Path) -> Path:
    write(repository, "counted", COUNTED, _config("counted", CACHE))
    write(repository, "plus_one", PLUS_ONE, _config("plus_one", outputs=""))
    write(repository, "seq", PLUS_ONE, _config("seq", CACHE + "sequence_batching {}", ""))
    decoupled = CACHE + "model_transaction_policy { decoupled: true }"
    write(repository, "dec", DECOUPLED, _config("dec", decoupled, ""))
    for name, extra in (("ens_top", CACHE), ("ens_steps", "")):
        (repository / name / "1").mkdir(parents=True)
        (repository / name / "config.pbtxt").write_text(_ensemble(name, extra))
    generate_models.simple_model(repository / "simple" / "1" / "model.onnx")
    (repository / "simple" / "config.pbtxt").write_text(generate_models.SIMPLE_CONFIG + CACHE)
    return repository


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = _repository(tmp_path_factory.mktemp("cache"))
    flags = ("--cache-config", "local,size=1048576", "--enable-shared-memory")
    with running_server(repository, "--no-strict-readiness", *flags) as running:
        yield running


@pytest.fixture(params=["http", "grpc"])
def client(request: pytest.FixtureRequest, server: RunningServer) -> Iterator[Any]:
    if request.param == "http":
        connection: Any = httpclient.InferenceServerClient(server.http_url)
    else:
        connection = grpcclient.InferenceServerClient(server.grpc_url)
    yield connection
    connection.close()


def _module(client: Any) -> Any:
    return httpclient if isinstance(client, httpclient.InferenceServerClient) else grpcclient


def _unique_x() -> np.ndarray:
    """An input no other test sends, so each test starts with a cold key."""
    return np.random.default_rng().random((1, 4), dtype=np.float32) + 1


def _infer(client: Any, model: str, x: np.ndarray, outputs: list[str] | None = None) -> Any:
    module = _module(client)
    tensor = module.InferInput("X", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    wanted = [module.InferRequestedOutput(n) for n in outputs] if outputs else None
    return client.infer(model, [tensor], outputs=wanted)


def _stats(client: Any, model: str) -> dict[str, int]:
    """Counts from the statistics extension (gRPC's JSON gives 64-bit numbers as strings)."""
    if isinstance(client, httpclient.InferenceServerClient):
        (stats,) = client.get_inference_statistics(model, "1")["model_stats"]
    else:
        (stats,) = client.get_inference_statistics(model, "1", as_json=True)["model_stats"]
    inference = stats["inference_stats"]

    def count(section: str) -> int:
        return int(inference.get(section, {}).get("count", 0))

    return {
        "hits": count("cache_hit"),
        "misses": count("cache_miss"),
        "hit_ns": int(inference.get("cache_hit", {}).get("ns", 0)),
        "success": count("success"),
        "fail": count("fail"),
        "executions": int(stats.get("execution_count", 0)),
        "inferences": int(stats.get("inference_count", 0)),
    }


def _moved(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in before if k != "hit_ns"}


def _metrics(server: RunningServer, model: str) -> dict[str, float]:
    samples = scrape(server)
    names = (
        "nv_cache_num_hits_per_model",
        "nv_cache_num_misses_per_model",
        "nv_cache_hit_duration_per_model",
        "nv_cache_miss_duration_per_model",
        "nv_inference_request_success",
        "nv_inference_exec_count",
    )
    return {name: samples[(name, model, "1")] for name in names}


def test_hits_and_misses_move_by_exactly_the_requests_sent(
    client: Any, server: RunningServer
) -> None:
    x = _unique_x()
    before, scraped = _stats(client, "counted"), _metrics(server, "counted")
    results = [_infer(client, "counted", x) for _ in range(3)]
    after = _stats(client, "counted")
    assert _moved(before, after) == {
        "hits": 2,
        "misses": 1,
        "success": 3,
        "fail": 0,
        "executions": 1,
        "inferences": 1,
    }
    assert after["hit_ns"] > before["hit_ns"]
    first = results[0]
    for result in results[1:]:  # the model ran once: the hits carry its first RUN count
        np.testing.assert_array_equal(result.as_numpy("Y"), first.as_numpy("Y"))
        np.testing.assert_array_equal(result.as_numpy("RUN"), first.as_numpy("RUN"))
    np.testing.assert_array_equal(first.as_numpy("Y"), x * 2)
    metrics = _metrics(server, "counted")
    assert metrics["nv_cache_num_hits_per_model"] - scraped["nv_cache_num_hits_per_model"] == 2
    assert metrics["nv_cache_num_misses_per_model"] - scraped["nv_cache_num_misses_per_model"] == 1
    assert metrics["nv_inference_request_success"] - scraped["nv_inference_request_success"] == 3
    assert metrics["nv_inference_exec_count"] - scraped["nv_inference_exec_count"] == 1


def test_a_requested_output_subset_is_its_own_entry(client: Any) -> None:
    x = _unique_x()
    before = _stats(client, "counted")
    everything = _infer(client, "counted", x)
    only_y = [_infer(client, "counted", x, ["Y"]) for _ in range(2)]
    assert _moved(before, _stats(client, "counted"))["hits"] == 1
    assert _moved(before, _stats(client, "counted"))["misses"] == 2
    for result in only_y:
        np.testing.assert_array_equal(result.as_numpy("Y"), everything.as_numpy("Y"))
        assert result.as_numpy("RUN") is None


def test_errors_are_never_cached(client: Any) -> None:
    x = -_unique_x()
    before = _stats(client, "counted")
    for _ in range(2):
        with pytest.raises(InferenceServerException, match="negative input"):
            _infer(client, "counted", x)
    moved = _moved(before, _stats(client, "counted"))
    assert (moved["fail"], moved["hits"], moved["misses"]) == (2, 0, 0)


def test_shared_memory_outputs_are_written_on_a_hit(client: Any) -> None:
    module = _module(client)
    suffix = uuid.uuid4().hex[:12]
    name, key, size = f"cache_{suffix}", f"/inferd_cache_{suffix}", 64
    handle = shm.create_shared_memory_region(name, key, size)
    client.register_system_shared_memory(name, key, size)
    a = np.random.default_rng().integers(0, 100, (1, 16), dtype=np.int32)
    try:
        hits = _stats(client, "simple")["hits"]
        for _ in range(2):
            shm.set_shared_memory_region(handle, [np.zeros((1, 16), dtype=np.int32)])
            inputs = [module.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
            for tensor in inputs:
                tensor.set_data_from_numpy(a)
            outputs = [module.InferRequestedOutput(n) for n in ("OUTPUT0", "OUTPUT1")]
            outputs[0].set_shared_memory(name, size)
            result = client.infer("simple", inputs, outputs=outputs)
            written = shm.get_contents_as_numpy(handle, np.int32, [1, 16])
            np.testing.assert_array_equal(written, a + a)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - a)
        assert _stats(client, "simple")["hits"] == hits + 1
    finally:
        client.unregister_system_shared_memory(name)
        shm.destroy_shared_memory_region(handle)


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ("seq", "Response Cache does not currently support model seq with sequence batching"),
        ("dec", "Response Cache does not currently support model dec with 'decoupled'"),
    ],
)
def test_sequence_and_decoupled_models_are_refused(
    server: RunningServer, model: str, reason: str
) -> None:
    state, said = model_states(server)[model]
    assert state == "UNAVAILABLE" and reason in said


def _twice_through(client: Any, ensemble: str) -> dict[str, dict[str, int]]:
    """Send one new input to `ensemble` twice; what moved in it and in its two steps."""
    x = _unique_x()
    models = (ensemble, "counted", "plus_one")
    before = {m: _stats(client, m) for m in models}
    for _ in range(2):
        np.testing.assert_array_equal(_infer(client, ensemble, x).as_numpy("Z"), x * 2 + 1)
    return {m: _moved(before[m], _stats(client, m)) for m in models}


def test_a_cached_ensemble_answers_without_running_its_steps(client: Any) -> None:
    moved = _twice_through(client, "ens_top")
    assert (moved["ens_top"]["hits"], moved["ens_top"]["misses"]) == (1, 1)
    assert moved["ens_top"]["success"] == 2
    assert (moved["counted"]["hits"], moved["counted"]["misses"]) == (0, 1)  # ran once
    assert moved["plus_one"]["executions"] == 1


def test_each_ensemble_step_uses_its_own_models_cache(client: Any) -> None:
    moved = _twice_through(client, "ens_steps")
    assert (moved["ens_steps"]["hits"], moved["ens_steps"]["misses"]) == (0, 0)
    assert (moved["counted"]["hits"], moved["counted"]["misses"]) == (1, 1)
    assert moved["counted"]["executions"] == 1
    assert moved["plus_one"]["executions"] == 2  # no cache of its own: it runs each time


def test_without_cache_config_the_model_runs_every_request(tmp_path: Path) -> None:
    write(tmp_path, "counted", COUNTED, _config("counted", CACHE))
    with running_server(tmp_path) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        try:
            x = _unique_x()
            runs = [int(_infer(client, "counted", x).as_numpy("RUN")[0, 0]) for _ in range(2)]
            assert runs == [1, 2]
            stats = _stats(client, "counted")
            assert (stats["hits"], stats["misses"]) == (0, 0)
        finally:
            client.close()
        assert "model 'counted' enables response_cache, but the server has no cache" in (
            server.log_text()
        )


@pytest.mark.parametrize("value", ["redis,host=localhost", "local,size=0"])
def test_a_cache_config_inferd_cannot_serve_stops_it_at_start(tmp_path: Path, value: str) -> None:
    command = [sys.executable, "-m", "inferd", "serve", "--model-repository", str(tmp_path)]
    done = subprocess.run(
        [*command, "--cache-config", value], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "--cache-config" in done.stderr
