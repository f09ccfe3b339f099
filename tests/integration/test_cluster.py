"""inferd serving on a real Ray cluster (a head and two worker nodes on this machine): where
instances land, the same answers as on one node, batching and sequences through remote
instances, placements that cannot be met, and hosts or nodes that go away."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("ray")
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.model_files import write
from tests.integration.ray_cluster import (
    SPAN_MODEL,
    LocalRayCluster,
    hosts_ran_at_once,
    placed_instances,
    ray_cluster,
)
from tests.integration.server import RunningServer, running_server

# A Ray cluster, a server whose models start a dozen host processes, then kills and restarts:
# minutes on a loaded 2-core machine, beyond the suite's default timeout.
pytestmark = pytest.mark.timeout(900)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "model_repository"
NOT_HERE = 'parameters { key: "inferd.cluster.in_process" value: { string_value: "false" } }\n'

SLOW = """
import time
import numpy as np

class InferdModel:
    def execute(self, batch):
        time.sleep(0.02)
        return {"OUTPUT": batch.inputs["INPUT"] * 2}
"""

# Writes into its input: arrays that come through Ray's object store are read-only.
WRITER = """
class InferdModel:
    def execute(self, batch):
        data = batch.inputs["INPUT"]
        data += 1
        return {"OUTPUT": data}
"""


# Implicit state of 64 KiB per sequence, kept by the hosts: every element of the state is the
# running sum of INPUT, and OUTPUT its last element.
STATE_MODEL = """
class InferdModel:
    def execute(self, batch):
        state = batch.inputs["INPUT_STATE"] + batch.inputs["INPUT"]
        return {"OUTPUT": state[:, -1:].copy(), "OUTPUT_STATE": state}
"""
STATE_ELEMENTS = 16 * 1024
STATE_CONFIG = (
    'name: "state_accumulate" backend: "python" max_batch_size: 8\n'
    'input [ { name: "INPUT", data_type: TYPE_INT32, dims: [ 1 ] } ]\n'
    'output [ { name: "OUTPUT", data_type: TYPE_INT32, dims: [ 1 ] } ]\n'
    "sequence_batching { max_sequence_idle_microseconds: 2000000 state [ {\n"
    '  input_name: "INPUT_STATE", output_name: "OUTPUT_STATE", data_type: TYPE_INT32\n'
    f"  dims: [ {STATE_ELEMENTS} ] }} ] }}\n"
    "instance_group [ { count: 2, kind: KIND_CPU } ]\n" + NOT_HERE
)

# Two hosts on two nodes, each needing the one copy of a per-device resource: with the limiter
# on, CPU 0 of each node is a pool of its own, so both hosts run at once.
LIMITED = (
    'name: "limited" backend: "python" max_batch_size: 8\n'
    'input [ { name: "INPUT", data_type: TYPE_FP32, dims: [ 4 ] } ]\n'
    'output [ { name: "SPAN", data_type: TYPE_FP64, dims: [ 3 ] } ]\n'
    'instance_group [ { count: 2, kind: KIND_CPU, rate_limiter { resources [ { name: "R", '
    "count: 1 } ] } } ]\n"
    'parameters { key: "inferd.cluster.placement" value: { string_value: "STRICT_SPREAD" } }\n'
    + NOT_HERE
)


def _io(name: str, extra: str) -> str:
    return (
        f'name: "{name}" backend: "python" max_batch_size: 8\n'
        'input [ { name: "INPUT", data_type: TYPE_FP32, dims: [ 4 ] } ]\n'
        'output [ { name: "OUTPUT", data_type: TYPE_FP32, dims: [ 4 ] } ]\n' + extra
    )


def _copy(source: str, target: Path, extra: str = "", name: str | None = None) -> None:
    shutil.copytree(EXAMPLES / source, target / (name or source))
    config = target / (name or source) / "config.pbtxt"
    text = config.read_text()
    if name is not None:
        text = text.replace(f'name: "{source}"', f'name: "{name}"')
    config.write_text(text + extra)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    with ray_cluster(workers=2) as running:
        yield running


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cluster_repository")
    # Three instances spread over three nodes: one in this process, two on hosts.
    _copy("simple", root)
    config = root / "simple" / "config.pbtxt"
    config.write_text(config.read_text().replace("count: 1", "count: 3"))
    _copy(
        "simple",
        root,
        NOT_HERE + 'parameters { key: "inferd.cluster.placement" value: { string_value: '
        '"STRICT_PACK" } }\n',
        name="simple_packed",
    )
    _copy("sequence_accumulate", root, NOT_HERE)
    # The ensemble's two ONNX branches on hosts, its Python steps wherever SPREAD puts them.
    for step in ("pipeline_branch_a", "pipeline_branch_b"):
        _copy(step, root, NOT_HERE)
    for step in ("pipeline_preprocess", "pipeline_postprocess"):
        _copy(step, root)
    _copy("pipeline", root)
    write(root, "slow", SLOW,
          _io("slow", "dynamic_batching { max_queue_delay_microseconds: 20000 }\n"
              "instance_group [ { count: 2, kind: KIND_CPU } ]\n" + NOT_HERE))  # fmt: skip
    write(root, "writer", WRITER, _io("writer", NOT_HERE))
    write(root, "limited", SPAN_MODEL, LIMITED)
    write(root, "state_accumulate", STATE_MODEL, STATE_CONFIG)
    # A GPU group on a cluster without GPUs: it cannot be placed.
    _copy("simple", root, name="on_gpu")
    config = root / "on_gpu" / "config.pbtxt"
    config.write_text(config.read_text().replace("KIND_CPU", "KIND_GPU"))
    return root


@pytest.fixture(scope="module")
def server(cluster: LocalRayCluster, repository: Path) -> Iterator[RunningServer]:
    with running_server(
        repository,
        "--cluster", cluster.address,
        "--cluster-placement-timeout", "3",
        "--rate-limit", "execution_count",
        "--no-strict-readiness",
        timeout=180,
    ) as running:  # fmt: skip
        yield running


def _simple_inputs(module: Any) -> tuple[list[Any], np.ndarray, np.ndarray]:
    in0 = np.arange(16, dtype=np.int32).reshape(1, 16)
    in1 = np.ones((1, 16), dtype=np.int32)
    inputs = [module.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    inputs[0].set_data_from_numpy(in0)
    inputs[1].set_data_from_numpy(in1)
    return inputs, in0, in1


def _infer_simple(client: Any, module: Any, model: str = "simple") -> None:
    inputs, in0, in1 = _simple_inputs(module)
    result = client.infer(model, inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), in0 + in1)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), in0 - in1)


def _tensor(module: Any, name: str, value: np.ndarray) -> list[Any]:
    tensor = module.InferInput(name, list(value.shape), "FP32")
    tensor.set_data_from_numpy(value)
    return [tensor]


def _fp32(module: Any, value: np.ndarray) -> list[Any]:
    return _tensor(module, "INPUT", value)


def test_spread_puts_one_instance_on_each_node(
    server: RunningServer, cluster: LocalRayCluster
) -> None:
    placed = placed_instances(server.log_text())
    remote = {name: node for name, (node, _) in placed.items() if name.startswith("simple_0_")}
    assert len(remote) == 2, server.log_text()
    assert len(set(remote.values())) == 2 and cluster.head_id not in remote.values()
    assert "instance simple_0_" in server.log_text() and "runs in this process" in server.log_text()


def test_strict_pack_puts_every_instance_on_one_node(server: RunningServer) -> None:
    placed = placed_instances(server.log_text())
    nodes = {node for name, (node, _) in placed.items() if name.startswith("simple_packed_")}
    assert len(nodes) == 1, server.log_text()


@pytest.mark.parametrize("module", [httpclient, grpcclient], ids=["http", "grpc"])
def test_same_answers_as_one_node(
    server: RunningServer, module: Any, single_node_pipeline: Any
) -> None:
    url = server.http_url if module is httpclient else server.grpc_url
    client = module.InferenceServerClient(url)
    for _ in range(6):  # round the instances, in-process and remote
        _infer_simple(client, module)
    _infer_simple(client, module, "simple_packed")
    raw = np.array([[0.5, 1.0, -0.3, 2.0, 0.0, 1.5, -1.0, 0.7]], dtype=np.float32)
    result = client.infer("pipeline", _tensor(module, "RAW", raw))
    expected = single_node_pipeline(raw)
    np.testing.assert_allclose(result.as_numpy("SCORES"), expected["SCORES"], rtol=1e-5)
    np.testing.assert_array_equal(result.as_numpy("LABEL"), expected["LABEL"])


@pytest.fixture(scope="module")
def single_node_pipeline() -> Iterator[Any]:
    """The example pipeline's answers from a server without a cluster."""
    with running_server(EXAMPLES, "--model-control-mode", "explicit", "--load-model", "pipeline",
                        "--grpc-port", "0", "--metrics-port", "0") as single:  # fmt: skip
        client = httpclient.InferenceServerClient(single.http_url)

        def answer(raw: np.ndarray) -> dict[str, np.ndarray]:
            result = client.infer("pipeline", _tensor(httpclient, "RAW", raw))
            return {name: result.as_numpy(name) for name in ("SCORES", "LABEL")}

        yield answer
        client.close()


def test_a_backend_may_write_into_its_inputs(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    value = np.full((1, 4), 2.0, np.float32)
    result = client.infer("writer", _fp32(httpclient, value))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT"), value + 1)


def test_remote_instances_run_formed_batches(server: RunningServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url, concurrency=16)
    value = np.ones((1, 4), np.float32)
    pending = [client.async_infer("slow", _fp32(httpclient, value)) for _ in range(48)]
    for request in pending:
        np.testing.assert_array_equal(request.get_result().as_numpy("OUTPUT"), value * 2)
    stats = client.get_inference_statistics("slow")["model_stats"][0]
    assert stats["inference_count"] == 48
    assert stats["execution_count"] < 48  # some batches held several requests
    client.close()


def test_rate_limiter_pools_are_per_node(server: RunningServer) -> None:
    """Each host needs the one copy of R on its device 0; the hosts are on two nodes, so
    their batches overlap (one pool for both would run them strictly in turn)."""
    placed = placed_instances(server.log_text())
    nodes = {placed[name][0] for name in ("limited_0_0", "limited_0_1")}
    assert len(nodes) == 2
    # As many requests as the hosts' slots (two batches in flight each), so both hosts get work.
    hosts_ran_at_once(server.http_url, "limited", 4)


def _metric_samples(server: RunningServer, name: str) -> dict[str, float]:
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    return {
        line.split("{", 1)[1].rsplit("}", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{")
    }


def test_metrics_show_each_remote_instance_with_its_node(server: RunningServer) -> None:
    placed = placed_instances(server.log_text())
    client = httpclient.InferenceServerClient(server.http_url)
    client.infer("slow", _fp32(httpclient, np.ones((1, 4), np.float32)))
    client.close()
    executions = _metric_samples(server, "inferd_instance_execution_total")
    for name in ("slow_0_0", "slow_0_1"):
        node = placed[name][0]
        labels = f'instance="{name}",model="slow",node="{node}",version="1"'
        assert labels in executions, executions
    assert sum(v for k, v in executions.items() if 'model="slow"' in k) >= 1
    deadline = time.monotonic() + 15  # host memory is read every 5 s
    while time.monotonic() < deadline:
        memory = _metric_samples(server, "inferd_host_resident_memory_bytes")
        if any('instance="slow_0_0"' in k and v > 0 for k, v in memory.items()):
            return
        time.sleep(0.5)
    raise AssertionError(f"no host memory reported: {memory}")


@pytest.mark.parametrize("model", ["sequence_accumulate", "state_accumulate"])
def test_interleaved_sequences_on_remote_instances(server: RunningServer, model: str) -> None:
    results: dict[int, list[int]] = {}
    done = threading.Event()
    expected_responses = 20 * 5

    def callback(result: Any, error: Any) -> None:
        assert error is None, error.message()
        sequence = int(result.get_response().id.split("-")[0])
        results.setdefault(sequence, []).append(int(result.as_numpy("OUTPUT")[0][0]))
        if sum(len(values) for values in results.values()) == expected_responses:
            done.set()

    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback)
    try:
        for step in range(5):
            for sequence in range(1, 21):
                value = np.array([[sequence * 10 + step]], dtype=np.int32)
                tensor = grpcclient.InferInput("INPUT", [1, 1], "INT32")
                tensor.set_data_from_numpy(value)
                client.async_stream_infer(
                    model, [tensor], request_id=f"{sequence}-{step}",
                    sequence_id=1000 + sequence, sequence_start=step == 0, sequence_end=step == 4,
                )  # fmt: skip
        assert done.wait(60)
    finally:
        client.stop_stream()
    for sequence, values in results.items():
        sums = np.cumsum([sequence * 10 + step for step in range(5)]).tolist()
        assert values == sums


def _held_states(server: RunningServer) -> tuple[float, float] | None:
    """The sequences, and bytes of state, that the state model's two hosts hold (read every
    5 s); None until both have reported."""
    found = []
    for name in ("inferd_host_sequence_states", "inferd_host_sequence_state_bytes"):
        samples = _metric_samples(server, name)
        values = [v for k, v in samples.items() if 'model="state_accumulate"' in k]
        if len(values) != 2:
            return None
        found.append(sum(values))
    return found[0], found[1]


def _wait_for_held_states(
    server: RunningServer, count: int, within: float, keep_alive: Any = None
) -> None:
    deadline = time.monotonic() + within
    held = _held_states(server)
    while held != (count, count * STATE_ELEMENTS * 4):  # INT32
        assert time.monotonic() < deadline, f"hosts hold {held}, not {count} states"
        if keep_alive is not None:
            keep_alive()
        time.sleep(0.5)
        held = _held_states(server)


def test_hosts_hold_the_implicit_states_and_drop_those_that_idle_out(
    server: RunningServer,
) -> None:
    client = httpclient.InferenceServerClient(server.http_url, network_timeout=60)
    sums = {key: 0 for key in (501, 502, 503)}

    def steps(start: bool = False) -> None:
        for key in sums:
            sums[key] += key
            answer = _accumulate(client, key, key, start, model="state_accumulate")
            assert answer == sums[key]

    steps(start=True)
    _wait_for_held_states(server, 3, within=20, keep_alive=steps)
    tensor = httpclient.InferInput("INPUT", [1, 1], "INT32")
    tensor.set_data_from_numpy(np.array([[1]], dtype=np.int32))
    ended = client.infer("state_accumulate", [tensor], sequence_id=501, sequence_end=True)
    assert int(ended.as_numpy("OUTPUT")[0][0]) == sums.pop(501) + 1
    _wait_for_held_states(server, 2, within=20, keep_alive=steps)  # its END dropped it
    _wait_for_held_states(server, 0, within=20)  # idle for 2 s: released, states dropped
    for key in (501, 502):
        with pytest.raises(InferenceServerException, match="must specify the START flag"):
            _accumulate(client, key, 1, model="state_accumulate")
    client.close()


def test_a_group_that_cannot_be_placed_leaves_only_its_model_unavailable(
    server: RunningServer,
) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    index = {row["name"]: row for row in client.get_model_repository_index()}
    assert index["on_gpu"]["state"] == "UNAVAILABLE"
    assert "could not be placed within 3 s" in index["on_gpu"]["reason"]
    assert "GPU" in index["on_gpu"]["reason"]
    assert index["simple"]["state"] == "READY"


def test_cluster_status_lists_nodes_instances_and_nothing_pending(
    server: RunningServer, cluster: LocalRayCluster
) -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "inferd", "cluster", "status", "--cluster", cluster.address],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert shown.count("ALIVE") == 3
    assert "simple v1 simple_0: 1 on node" in shown
    assert "slow v1 slow_0: " in shown
    assert "pending placements:\n  none" in shown


def _load(server: RunningServer, model: str, seconds: float) -> tuple[int, list[str]]:
    """Requests to `model` for `seconds` from 4 threads: how many succeeded, and the errors."""
    errors: list[str] = []
    succeeded = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client_loop() -> None:
        nonlocal succeeded
        client = httpclient.InferenceServerClient(server.http_url, network_timeout=30)
        value = np.ones((1, 4), np.float32)
        while time.monotonic() < stop:
            try:
                client.infer(model, _fp32(httpclient, value))
            except InferenceServerException as exc:
                with lock:
                    errors.append(f"{exc.status()} {exc.message()}")
            else:
                with lock:
                    succeeded += 1
        client.close()

    threads = [threading.Thread(target=client_loop) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return succeeded, errors


def _serves_again(server: RunningServer, model: str, within: float) -> float:
    client = httpclient.InferenceServerClient(server.http_url)
    start = time.monotonic()
    while time.monotonic() - start < within:
        try:
            client.infer(model, _fp32(httpclient, np.ones((1, 4), np.float32)))
            if client.is_model_ready(model):
                return time.monotonic() - start
        except InferenceServerException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{model} did not serve again within {within} s")


def test_a_killed_host_fails_only_what_it_held_and_comes_back(server: RunningServer) -> None:
    placed = placed_instances(server.log_text())
    _, pid = placed["slow_0_0"]
    result: dict[str, Any] = {}
    loader = threading.Thread(target=lambda: result.update(load=_load(server, "slow", 4.0)))
    loader.start()
    time.sleep(1.0)
    os.kill(pid, signal.SIGKILL)
    loader.join()
    succeeded, errors = result["load"]
    assert succeeded > 0
    # A batch in flight went to the other instance, or failed as unavailable: nothing else.
    assert all("503" in error or "UNAVAILABLE" in error for error in errors), errors
    _serves_again(server, "slow", 10)


def _accumulate(
    client: Any, sequence: int, value: int, start: bool = False, model: str = "sequence_accumulate"
) -> int:
    tensor = httpclient.InferInput("INPUT", [1, 1], "INT32")
    tensor.set_data_from_numpy(np.array([[value]], dtype=np.int32))
    result = client.infer(model, [tensor], sequence_id=sequence, sequence_start=start)
    return int(result.as_numpy("OUTPUT")[0][0])


# The Python model keeps its sums itself, in its host; the state model's host keeps its implicit
# states. Either way they go with the host.
@pytest.mark.parametrize("model", ["sequence_accumulate", "state_accumulate"])
def test_sequences_of_a_restarted_host_are_lost_not_answered_from_a_fresh_state(
    server: RunningServer, model: str
) -> None:
    client = httpclient.InferenceServerClient(server.http_url, network_timeout=60)
    assert _accumulate(client, 77, 3, start=True, model=model) == 3
    assert _accumulate(client, 77, 3, model=model) == 6
    for name, (_, pid) in placed_instances(server.log_text()).items():
        if name.startswith(f"{model}_"):
            os.kill(pid, signal.SIGKILL)  # between steps: no batch sees the host die
    with pytest.raises(InferenceServerException) as lost:
        _accumulate(client, 77, 4, model=model)
    assert lost.value.status() == "503" and "sequence lost" in lost.value.message()
    with pytest.raises(InferenceServerException, match="must specify the START flag"):
        _accumulate(client, 77, 5, model=model)
    # The other host's restart is news to the first batch it runs, which fails the same way
    # (the ingress learns of a restart between batches from the next answer); then it serves.
    for _ in range(2):
        try:
            assert _accumulate(client, 78, 6, start=True, model=model) == 6
            break
        except InferenceServerException as exc:
            assert "sequence lost" in exc.message()
    assert _accumulate(client, 78, 1, model=model) == 7
    client.close()


def test_a_lost_node_moves_its_instances(server: RunningServer, cluster: LocalRayCluster) -> None:
    slow_nodes = {node for name, (node, _) in placed_instances(server.log_text()).items()
                  if name.startswith("slow_")}  # fmt: skip
    node = next(n for n in cluster.cluster.worker_nodes if n.node_id in slow_nodes)
    cluster.add_worker(spare=1.0)  # room for the moved bundle
    cluster.cluster.remove_node(node, allow_graceful=False)
    _serves_again(server, "slow", 15)
    succeeded, errors = _load(server, "slow", 2.0)
    assert succeeded > 0 and not errors
