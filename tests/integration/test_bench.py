"""`inferd bench` against the real server: sane numbers in its files, clear failures."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from onnx import TensorProto

import generate_models
from inferd.cli.main import main
from tests.integration.server import RunningServer, free_port, running_server

REQUESTS = 24
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    """`inferd bench` as a user runs it: a separate process."""
    command = [sys.executable, "-m", "inferd", "bench", "--no-progress", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=90)


def check_steps(document: dict[str, Any], loads: list[float], batch_size: int) -> None:
    """Counts add up, percentiles are ordered, throughput matches requests over time."""
    steps = document["steps"]
    assert [step["load"] for step in steps] == loads
    for step in steps:
        assert step["errors"] == 0, step["first_error"]
        assert step["requests"] == REQUESTS
        latencies = [step[key] for key in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms")]
        assert 0 < latencies[0] <= latencies[1] <= latencies[2] <= latencies[3] <= latencies[4]
        expected = step["requests"] * batch_size / step["duration_s"]
        assert step["throughput"] == pytest.approx(expected)
        assert step["client_cpu"] > 0


def check_server_split(steps: list[dict[str, Any]], batch_size: int) -> None:
    """inferd has the statistics extension: every step gets its queue/compute split."""
    for step in steps:
        assert step["server_queue_us"] >= 0
        assert step["server_compute_us"] >= step["server_compute_infer_us"] > 0
        assert step["server_avg_batch"] >= batch_size


def test_http_run_writes_csv_json_and_plot(server: RunningServer, tmp_path: Path) -> None:
    out = {name: tmp_path / name for name in ("run.csv", "run.json", "plot.png")}
    result = bench(
        "-m", "simple", "-u", server.http_url, "--concurrency", "1:4", "--requests", str(REQUESTS),
        "--csv", str(out["run.csv"]), "--json", str(out["run.json"]),
        "--plot", str(out["plot.png"]),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(out["run.json"].read_text())
    assert (document["model"], document["protocol"], document["mode"]) == (
        "simple", "http", "concurrency",
    )  # fmt: skip
    check_steps(document, [1, 2, 3, 4], batch_size=1)
    check_server_split(document["steps"], batch_size=1)
    with out["run.csv"].open() as stream:
        rows = list(csv.DictReader(stream))
    assert [int(row["requests"]) for row in rows] == [REQUESTS] * 4
    assert [float(row["p99_ms"]) for row in rows] == [s["p99_ms"] for s in document["steps"]]
    assert out["plot.png"].read_bytes().startswith(PNG_MAGIC)
    assert "infer/s" in result.stdout and "p99 ms" in result.stdout


def test_grpc_run_with_batches(server: RunningServer, tmp_path: Path) -> None:
    if "gRPC" not in server.ports:
        pytest.skip("this server has no gRPC port")
    run = tmp_path / "grpc.json"
    result = bench(
        "-m", "simple", "-i", "grpc", "-u", server.grpc_url, "--concurrency", "1:4:x2",
        "-b", "4", "--requests", str(REQUESTS), "--json", str(run),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(run.read_text())
    assert document["protocol"] == "grpc"
    check_steps(document, [1, 2, 4], batch_size=4)
    check_server_split(document["steps"], batch_size=4)


def test_request_rate_and_compare_in_one_plot(server: RunningServer, tmp_path: Path) -> None:
    first, second, picture = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "both.png"
    common = ["-m", "mlp", "-u", server.http_url, "--requests", str(REQUESTS), "-b", "2"]
    assert main(["bench", *common, "--request-rate", "100:200:100", "--json", str(first)]) == 0
    code = main([
        "bench", *common, "--request-rate", "150", "--label", "second", "--json", str(second),
        "--plot", str(picture), "--compare", str(first), "--no-progress",
    ])  # fmt: skip
    assert code == 0
    check_steps(json.loads(first.read_text()), [100.0, 200.0], batch_size=2)
    assert json.loads(second.read_text())["label"] == "second"
    assert picture.read_bytes().startswith(PNG_MAGIC)


@pytest.fixture(scope="module")
def variable_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A BYTES model whose second axis is variable, so its shape must come from --shape."""
    repository = tmp_path_factory.mktemp("bench_repository")
    path = repository / "strings" / "1" / "model.onnx"
    generate_models.identity_model(path, TensorProto.STRING, ["batch", "n"])
    with running_server(repository) as running:
        yield running


def test_bytes_input_with_variable_dims(variable_server: RunningServer, tmp_path: Path) -> None:
    run = tmp_path / "strings.json"
    result = bench(
        "-m", "strings", "-u", variable_server.http_url, "--shape", "INPUT0:3", "-b", "2",
        "--requests", str(REQUESTS), "--json", str(run),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    check_steps(json.loads(run.read_text()), [1], batch_size=2)


def test_variable_dims_without_shape_is_a_clear_error(variable_server: RunningServer) -> None:
    result = bench("-m", "strings", "-u", variable_server.http_url, "--requests", "1")
    assert result.returncode == 2
    assert "--shape INPUT0:" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "no_such_model"], "no_such_model"),
        (["-m", "simple", "--shape", "INPUT0:x"], "dims must be integers"),
        (["-m", "simple", "--shape", "NOPE:16"], "--shape names ['NOPE']"),
        (["-m", "simple", "--shape", "INPUT0:4,4"], "does not fit its shape [16]"),
        (["-m", "simple", "-b", "9"], "exceeds max_batch_size 8"),
        (["-m", "simple", "--concurrency", "4:1"], "START <= END"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    server: RunningServer, args: list[str], message: str
) -> None:
    result = bench(*args, "-u", server.http_url, "--requests", "1")
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_every_request_failing_exits_1(server: RunningServer, tmp_path: Path) -> None:
    # 3 values where the model wants 16: the server rejects each request.
    data = tmp_path / "wrong.json"
    wrong = {"content": [1, 2, 3], "shape": [3]}
    data.write_text(json.dumps({"data": [{"INPUT0": wrong, "INPUT1": wrong}]}))
    result = bench(
        "-m", "simple", "-u", server.http_url, "--input-data", str(data), "--requests", "3"
    )
    assert result.returncode == 1
    assert "every request failed" in result.stderr


def test_no_server_is_a_clear_error() -> None:
    result = bench("-m", "simple", "-u", f"127.0.0.1:{free_port()}", "--requests", "1")
    assert result.returncode == 2
    assert "model 'simple' at 127.0.0.1:" in result.stderr
