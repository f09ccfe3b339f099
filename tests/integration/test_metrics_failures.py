"""/metrics over a real server: latency histograms move by exactly the requests sent, failures
are counted under Triton's reasons (a full queue REJECTED, a cancelled call CANCELED, a model
that raises BACKEND, a bad request OTHER), plus gauges, executions per instance and loads."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from tests.integration.model_files import write
from tests.integration.server import RunningServer, running_server
from tests.integration.test_cancellation import eventually

# IN = 0 answers at once, 1 raises, 2 holds the one instance until its call is cancelled.
GATE = """
import time

class InferdModel:
    def initialize(self, context):
        self.marker = context.parameters["marker"]

    def execute(self, batch):
        request = batch.requests[0]
        value = int(request.inputs["IN"].flat[0])
        if value == 1:
            raise RuntimeError("failing on purpose")
        if value == 2:
            with open(self.marker, "a") as marker:
                marker.write("holding\\n")
            deadline = time.monotonic() + 30
            while not request.is_cancelled() and time.monotonic() < deadline:
                time.sleep(0.01)
        return {"OUT": batch.inputs["IN"]}
"""

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 1
input [ {{ name: "IN", data_type: TYPE_INT32, dims: [ 1 ] }} ]
output [ {{ name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
dynamic_batching {{ default_queue_policy {{ max_queue_size: 1 }} }}
parameters [ {{ key: "marker", value: {{ string_value: "{marker}" }} }} ]
"""

BROKEN = """
class InferdModel:
    def initialize(self, context):
        raise RuntimeError("cannot load on purpose")

    def execute(self, batch):
        return {}
"""

SUCCESSES = 7


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("metrics_failures")
    write(root, "gate", GATE, CONFIG.format(name="gate", marker=root / "gate.seen"))
    write(root, "broken", BROKEN, CONFIG.format(name="broken", marker=root / "broken.seen"))
    return root


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[RunningServer]:
    with running_server(
        repository, "--no-strict-readiness", "--metrics-buckets", "0.001,0.1,1,60"
    ) as running:
        yield running


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: RunningServer) -> Samples:
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset({"model": "gate", "version": "1", **labels}.items())), 0)


def gate_input(value: int, module: object = grpcclient) -> object:
    tensor = module.InferInput("IN", [1, 1], "INT32")  # type: ignore[attr-defined]
    tensor.set_data_from_numpy(np.array([[value]], np.int32))
    return tensor


def holding(repository: Path) -> int:
    marker = repository / "gate.seen"
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def exercise(server: RunningServer, repository: Path, grpc: Any, http: Any) -> Samples:
    """Send one request of each kind of failure and SUCCESSES successful ones; the scrape after."""
    answers: list[object] = []

    def answered(result: object, error: object) -> None:
        answers.append(error)

    held = holding(repository)
    hold = grpc.async_infer("gate", [gate_input(2)], answered)
    eventually(lambda: holding(repository) > held)
    queued = grpc.async_infer("gate", [gate_input(0)], answered)
    eventually(lambda: value(scrape(server), "nv_inference_pending_request_count") == 1)
    during = scrape(server)
    assert value(during, "inferd_inference_in_flight_request_count") == 2
    with pytest.raises(InferenceServerException):
        http.infer("gate", [gate_input(0, httpclient)])  # the queue is full: REJECTED
    queued.cancel()
    hold.cancel()
    eventually(lambda: value(scrape(server), "inferd_inference_in_flight_request_count") == 0)
    with pytest.raises(InferenceServerException, match="failing on purpose"):
        http.infer("gate", [gate_input(1, httpclient)])  # BACKEND
    bad = httpclient.InferInput("IN", [1, 2], "INT32")
    bad.set_data_from_numpy(np.zeros((1, 2), np.int32))
    with pytest.raises(InferenceServerException):
        http.infer("gate", [bad])  # a shape the model does not take: OTHER
    for _ in range(SUCCESSES):
        http.infer("gate", [gate_input(0, httpclient)])
    return scrape(server)


def test_failures_by_reason_and_histograms_count_each_request(
    server: RunningServer, repository: Path
) -> None:
    before = scrape(server)
    with (
        closing(grpcclient.InferenceServerClient(server.grpc_url)) as grpc,
        closing(httpclient.InferenceServerClient(server.http_url)) as http,
    ):
        after = exercise(server, repository, grpc, http)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    failures = {
        reason: delta("nv_inference_request_failure", reason=reason)
        for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER")
    }
    assert failures == {"REJECTED": 1, "CANCELED": 2, "BACKEND": 1, "OTHER": 1}
    assert delta("inferd_inference_request_cancelled") == 2
    requests = SUCCESSES + sum(failures.values())
    assert delta("inferd_request_duration_seconds_count") == requests
    assert delta("inferd_request_duration_seconds_bucket", le="+Inf") == requests
    for name in ("inferd_queue_duration_seconds", "inferd_compute_duration_seconds"):
        assert delta(f"{name}_count") == SUCCESSES
        assert delta(f"{name}_bucket", le="60.0") == SUCCESSES
        assert delta(f"{name}_sum") > 0
    # Executions that answered: the successes and the held one (its model returned once it saw
    # the call cancelled); a batch whose model raised is no execution, as in the statistics.
    executions = SUCCESSES + 1
    assert delta("inferd_batch_size_count") == executions
    assert delta("inferd_batch_size_bucket", le="1") == executions
    assert delta("inferd_instance_executions_total", instance="gate_0_0") == executions


def test_load_failures_and_durations(server: RunningServer) -> None:
    samples = scrape(server)
    broken = frozenset({"model": "broken", "version": "1"}.items())
    assert samples[("inferd_model_load_failures_total", broken)] == 1
    assert samples[("inferd_model_load_duration_seconds", broken)] > 0
    assert value(samples, "inferd_model_load_duration_seconds") > 0
    gate = frozenset({"model": "gate", "version": "1"}.items())
    assert ("inferd_model_load_failures_total", gate) not in samples


def test_cpu_and_memory_of_the_host_and_the_process(server: RunningServer) -> None:
    samples = scrape(server)
    names = {name for name, _ in samples}
    assert {
        "inferd_process_cpu_utilization",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "nv_cpu_utilization",
        "nv_cpu_memory_total_bytes",
        "nv_cpu_memory_used_bytes",
    } <= names
    assert samples[("process_resident_memory_bytes", frozenset())] > 0
    assert 0 <= samples[("nv_cpu_utilization", frozenset())] <= 1


@pytest.mark.parametrize(
    "flag", [("--metrics-buckets", "0.1,0.01"), ("--metrics-config", "summary_quantiles=0.5")]
)
def test_a_bad_metrics_flag_stops_the_server_at_start(
    tmp_path: Path, flag: tuple[str, str]
) -> None:
    command = [sys.executable, "-m", "inferd", "serve", "--model-repository", str(tmp_path), *flag]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert flag[0] in done.stderr
