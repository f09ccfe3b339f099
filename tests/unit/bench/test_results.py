"""The per-step figures of a streaming run, from the times a Tally recorded."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from inferd.bench.load import Tally
from inferd.bench.results import RunResult, read_json, summarize_step, write_csv, write_json

MS = 1_000_000  # nanoseconds
STREAM_KEYS = ("requests_per_s", "responses", "responses_per_s", "ttft_p50_ms", "inter_p99_ms")


def streamed_tally() -> Tally:
    """Two streams over 2 s: 3 responses at +10, +12, +15 ms, and 1 response at +30 ms."""
    tally = Tally(elapsed_s=2.0, cpu_s=0.5, sent=2)
    tally.add_stream(0, [10 * MS, 12 * MS, 15 * MS])
    tally.latencies_ns.append(16 * MS)
    tally.add_stream(100 * MS, [130 * MS])
    tally.latencies_ns.append(31 * MS)
    return tally


def test_a_stream_records_first_response_and_gaps() -> None:
    tally = streamed_tally()
    assert tally.responses == 4
    assert tally.ttft_ns == [10 * MS, 30 * MS]
    assert tally.gaps_ns == [2 * MS, 3 * MS]  # the one-response stream has no gap


def test_a_stream_without_responses_has_no_first_response() -> None:
    tally = Tally()
    tally.add_stream(0, [])
    assert (tally.responses, tally.ttft_ns, tally.gaps_ns) == (0, [], [])


def test_streaming_step_figures() -> None:
    step = summarize_step(8, streamed_tally(), batch_size=1, server=None, streaming=True)
    assert (step.requests, step.responses) == (2, 4)
    assert step.requests_per_s == pytest.approx(1.0)
    assert step.responses_per_s == pytest.approx(2.0)
    assert step.ttft_p50_ms == pytest.approx(20.0)
    assert step.ttft_p99_ms == pytest.approx(10 + 20 * 0.99)
    assert step.inter_p50_ms == pytest.approx(2.5)
    assert step.inter_p99_ms == pytest.approx(2 + 0.99)
    assert step.p50_ms == pytest.approx(23.5)  # whole streams: 16 and 31 ms


def test_a_unary_step_has_no_streaming_figures() -> None:
    tally = Tally(elapsed_s=1.0, latencies_ns=[5 * MS, 7 * MS])
    step = summarize_step(1, tally, batch_size=4, server=None, streaming=False)
    assert step.requests_per_s == pytest.approx(2.0)
    assert step.throughput == pytest.approx(8.0)
    assert step.responses is None and step.ttft_p50_ms is None and step.inter_p99_ms is None


def test_streams_without_gaps_or_responses_give_none() -> None:
    tally = Tally(elapsed_s=1.0, latencies_ns=[MS])
    tally.add_stream(0, [])
    step = summarize_step(1, tally, batch_size=1, server=None, streaming=True)
    assert (step.responses, step.responses_per_s) == (0, 0.0)
    assert step.ttft_p50_ms is None and step.inter_p50_ms is None


def test_files_keep_the_streaming_figures(tmp_path: Path) -> None:
    step = summarize_step(2, streamed_tally(), batch_size=1, server=None, streaming=True)
    run = RunResult("r", "m", "u", "grpc", "concurrency", 1, [step], streaming=True)
    write_json(run, tmp_path / "run.json")
    assert read_json(tmp_path / "run.json") == run
    write_csv(run, tmp_path / "run.csv")
    header, row = (tmp_path / "run.csv").read_text().splitlines()
    assert "streaming" in header.split(",") and "ttft_p99_ms" in header.split(",")
    assert ",True," in row


def test_files_written_before_streaming_still_read(tmp_path: Path) -> None:
    step = summarize_step(1, Tally(elapsed_s=1.0, latencies_ns=[MS]), 1, None, streaming=False)
    document = asdict(RunResult("old", "m", "u", "http", "concurrency", 1, [step]))
    del document["streaming"]
    for key in STREAM_KEYS:
        del document["steps"][0][key]
    (tmp_path / "old.json").write_text(json.dumps(document))
    run = read_json(tmp_path / "old.json")
    assert run.streaming is False and run.steps[0].ttft_p50_ms is None
