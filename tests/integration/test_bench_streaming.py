"""`inferd bench --streaming` against the real server, over gRPC ModelStreamInfer, SSE and the
OpenAI routes: the example decoupled models `repeat` and `tiny_lm`, a model that fails
mid-stream, and a model that is not decoupled. Counts are checked, never timings."""

from __future__ import annotations

import csv
import json
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.server import RunningServer, running_server
from tests.integration.test_bench import PNG_MAGIC, bench

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "model_repository"
REQUESTS = 12
TIMES = 3  # responses per request of `repeat` in these tests

# A decoupled model that sends one response, then fails the request.
HALFWAY = """
class InferdModel:
    def execute(self, batch):
        for request in batch.requests:
            request.sender.send({"OUT": request.inputs["IN"]})
            request.sender.send_error("the model gave up mid-stream")
"""
HALFWAY_CONFIG = """
name: "halfway"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "IN", data_type: TYPE_INT32, dims: [ 1 ] } ]
output [ { name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] } ]
"""
STREAM_COLUMNS = (
    "requests_per_s", "responses", "responses_per_s", "ttft_p50_ms", "ttft_p99_ms",
    "inter_p50_ms", "inter_p99_ms",
)  # fmt: skip


@pytest.fixture(scope="module")
def server(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """`simple` (not decoupled), the examples `repeat` and `tiny_lm`, and `halfway`."""
    repository = tmp_path_factory.mktemp("bench_streaming")
    shutil.copytree(model_repository / "simple", repository / "simple")
    shutil.copytree(EXAMPLES / "repeat", repository / "repeat")
    shutil.copytree(EXAMPLES / "tiny_lm", repository / "tiny_lm")
    version = repository / "halfway" / "1"
    version.mkdir(parents=True)
    (version / "model.py").write_text(textwrap.dedent(HALFWAY))
    (repository / "halfway" / "config.pbtxt").write_text(HALFWAY_CONFIG)
    with running_server(repository) as running:
        yield running


def url(server: RunningServer, protocol: str) -> str:
    if protocol == "grpc" and "gRPC" not in server.ports:
        pytest.skip("this server has no gRPC port")
    return server.grpc_url if protocol == "grpc" else server.http_url


@pytest.fixture
def repeat_data(tmp_path: Path) -> Path:
    """One `repeat` request: IN of 4 values, sent back TIMES times."""
    path = tmp_path / "repeat.json"
    entry = {"IN": {"content": [1, 2, 3, 4], "shape": [4]}, "TIMES": [TIMES]}
    path.write_text(json.dumps({"data": [entry]}))
    return path


def check_stream_steps(steps: list[dict[str, Any]], per_request: int) -> None:
    """Every request succeeded with `per_request` responses; the figures exist and are ordered."""
    for step in steps:
        assert step["errors"] == 0, step["first_error"]
        assert step["requests"] == REQUESTS
        assert step["responses"] == REQUESTS * per_request
        assert step["responses_per_s"] == pytest.approx(step["requests_per_s"] * per_request)
        assert step["requests_per_s"] == pytest.approx(step["requests"] / step["duration_s"])
        assert 0 < step["ttft_p50_ms"] <= step["ttft_p99_ms"] <= step["max_ms"]
        if per_request > 1:
            assert 0 < step["inter_p50_ms"] <= step["inter_p99_ms"]
        else:  # one response: nothing comes between two
            assert step["inter_p50_ms"] is None and step["inter_p99_ms"] is None


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_streaming_repeat_reports_first_and_inter_response_times(
    server: RunningServer, protocol: str, repeat_data: Path, tmp_path: Path
) -> None:
    out = {name: tmp_path / name for name in ("run.csv", "run.json", "plot.png")}
    result = bench(
        "-m", "repeat", "-i", protocol, "-u", url(server, protocol), "--streaming",
        "--input-data", str(repeat_data), "--concurrency", "1:4:x2", "--requests", str(REQUESTS),
        "--csv", str(out["run.csv"]), "--json", str(out["run.json"]),
        "--plot", str(out["plot.png"]),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(out["run.json"].read_text())
    assert (document["protocol"], document["streaming"]) == (protocol, True)
    assert [step["load"] for step in document["steps"]] == [1, 2, 4]
    check_stream_steps(document["steps"], per_request=TIMES)
    with out["run.csv"].open() as stream:
        rows = list(csv.DictReader(stream))
    assert set(STREAM_COLUMNS) <= set(rows[0])
    assert [int(row["responses"]) for row in rows] == [REQUESTS * TIMES] * 3
    assert [row["streaming"] for row in rows] == ["True"] * 3
    assert out["plot.png"].read_bytes().startswith(PNG_MAGIC)
    for header in ("resp/s", "TTFT p50 ms", "inter p99 ms"):
        assert header in result.stdout


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_request_rate_streams(
    server: RunningServer, protocol: str, repeat_data: Path, tmp_path: Path
) -> None:
    run = tmp_path / "rate.json"
    result = bench(
        "-m", "repeat", "-i", protocol, "-u", url(server, protocol), "--streaming",
        "--input-data", str(repeat_data), "--request-rate", "100", "--requests", str(REQUESTS),
        "--json", str(run),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(run.read_text())
    assert document["mode"] == "request_rate"
    check_stream_steps(document["steps"], per_request=TIMES)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_streaming_a_model_that_is_not_decoupled(
    server: RunningServer, protocol: str, tmp_path: Path
) -> None:
    run = tmp_path / "simple.json"
    result = bench(
        "-m", "simple", "-i", protocol, "-u", url(server, protocol), "--streaming",
        "--concurrency", "2", "--requests", str(REQUESTS), "--json", str(run),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    check_stream_steps(json.loads(run.read_text())["steps"], per_request=1)


def test_grpc_streams_batches(server: RunningServer, tmp_path: Path) -> None:
    run = tmp_path / "batches.json"
    result = bench(
        "-m", "simple", "-i", "grpc", "-u", url(server, "grpc"), "--streaming", "-b", "4",
        "--requests", str(REQUESTS), "--json", str(run),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    step = json.loads(run.read_text())["steps"][0]
    assert step["responses"] == REQUESTS
    assert step["throughput"] == pytest.approx(step["requests_per_s"] * 4)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_an_error_mid_stream_fails_its_request(
    server: RunningServer, protocol: str, tmp_path: Path
) -> None:
    run = tmp_path / "halfway.json"
    result = bench(
        "-m", "halfway", "-i", protocol, "-u", url(server, protocol), "--streaming",
        "--requests", "3", "--json", str(run),
    )  # fmt: skip
    assert result.returncode == 1
    assert "every request failed" in result.stderr
    step = json.loads(run.read_text())["steps"][0]
    assert (step["requests"], step["errors"], step["responses"]) == (0, 3, 0)
    assert "the model gave up mid-stream" in step["first_error"]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_request_refused_before_its_stream_is_an_error(
    server: RunningServer, protocol: str, tmp_path: Path
) -> None:
    # 3 values where `simple` wants 16: refused before any response (HTTP 400, gRPC in-stream).
    data = tmp_path / "wrong.json"
    wrong = {"content": [1, 2, 3], "shape": [3]}
    data.write_text(json.dumps({"data": [{"INPUT0": wrong, "INPUT1": wrong}]}))
    result = bench(
        "-m", "simple", "-i", protocol, "-u", url(server, protocol), "--streaming",
        "--input-data", str(data), "--requests", "2",
    )  # fmt: skip
    assert result.returncode == 1
    assert "every request failed" in result.stderr
    assert "INPUT0" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-i", "http", "-b", "2"], "one sample per request"),
        (["-i", "openai", "-b", "2"], "--batch-size, --shape and --input-data do not apply"),
        (["-i", "openai", "--input-data", "zero"], "do not apply"),
        (["-i", "openai", "--max-tokens", "0"], "--max-tokens must be at least 1"),
        (["-i", "openai", "-x", "1"], "-i openai names no version"),
        (["-i", "openai", "--openai-route", "edits"], "invalid choice: 'edits'"),
    ],
)
def test_bad_streaming_combinations_are_usage_errors(
    server: RunningServer, args: list[str], message: str
) -> None:
    result = bench("-m", "simple", "-u", server.http_url, "--streaming", *args, "--requests", "1")
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_decoupled_model_needs_streaming(server: RunningServer) -> None:
    result = bench("-m", "repeat", "-u", server.http_url, "--shape", "IN:2", "--requests", "1")
    assert result.returncode == 2
    assert "model 'repeat' is decoupled (it streams its responses): add --streaming" in (
        result.stderr
    )


def test_compare_refuses_to_mix_streaming_and_not(server: RunningServer, tmp_path: Path) -> None:
    unary = tmp_path / "unary.json"
    common = ["-m", "simple", "-u", server.http_url, "--requests", "2"]
    assert bench(*common, "--json", str(unary)).returncode == 0
    result = bench(
        *common, "--streaming", "--plot", str(tmp_path / "p.png"), "--compare", str(unary)
    )
    assert result.returncode == 2
    assert "mixes runs with and without --streaming" in result.stderr


@pytest.mark.parametrize("route", ["completions", "chat"])
def test_openai_streams_report_first_and_inter_token_times(
    server: RunningServer, route: str, tmp_path: Path
) -> None:
    run = tmp_path / "openai.json"
    result = bench(
        "-m", "tiny_lm", "-i", "openai", "-u", server.http_url, "--streaming",
        "--openai-route", route, "--prompt", "The White Rabbit", "--max-tokens", str(TIMES),
        "--concurrency", "1:2", "--requests", str(REQUESTS), "--json", str(run),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(run.read_text())
    assert (document["protocol"], document["streaming"]) == ("openai", True)
    # One response per generated character: the chat's opening chunk (its role alone) and
    # the closing chunk (its finish_reason alone) are not counted.
    check_stream_steps(document["steps"], per_request=TIMES)
    assert f"tiny_lm @ {server.http_url} (openai {route})" in result.stdout


def test_openai_stream_of_a_model_the_routes_do_not_serve_fails(server: RunningServer) -> None:
    result = bench(
        "-m", "repeat", "-i", "openai", "-u", server.http_url, "--streaming", "--requests", "2"
    )
    assert result.returncode == 1
    assert "every request failed" in result.stderr
    assert "HTTP 404" in result.stderr


def test_openai_needs_streaming(server: RunningServer) -> None:
    result = bench("-m", "tiny_lm", "-i", "openai", "-u", server.http_url, "--requests", "1")
    assert result.returncode == 2
    assert "-i openai measures streams (stream: true): add --streaming" in result.stderr
