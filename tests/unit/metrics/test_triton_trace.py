"""Trace settings and sampling of `TritonTracer`, and the log settings of `ServerLogs`."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inferd.cli.log_control import ServerLogs
from inferd.core.errors import InvalidArgument
from inferd.core.types import Timestamps
from inferd.metrics.trace_settings import DEFAULTS, start_settings
from inferd.metrics.triton_trace import TritonTracer


def run(tracer: TritonTracer, model: str, requests: int) -> None:
    """`requests` requests, each finished before the next arrives."""
    for _ in range(requests):
        marks = Timestamps(received=time.monotonic_ns())
        tracer.request_arrived(model, marks, "")  # REQUEST_START: now
        after = time.monotonic_ns() + 1
        marks.queued, marks.compute_start, marks.compute_end = after, after + 1, after + 2
        marks.compute_input_end = marks.compute_output_start = after + 1
        marks.sent = after + 3
        tracer.request_finished(model, "1", marks, True)


def written(path: Path) -> list[dict[str, object]]:
    return json.loads(path.read_text()) if path.exists() else []


def test_one_trace_per_rate_requests_until_the_count_is_spent(tmp_path: Path) -> None:
    tracer = TritonTracer()
    trace_file = tmp_path / "t.json"
    settings = {"trace_level": ["TIMESTAMPS"], "trace_rate": ["2"], "trace_count": ["3"]}
    tracer.update_trace_settings("", {**settings, "trace_file": [str(trace_file)]})
    run(tracer, "m", 20)
    assert tracer.trace_settings()["trace_count"] == ["0"]  # as Triton answers: none left
    tracer.close()
    # The count spent and its traces finished: written to the next indexed file, as Triton does.
    assert not trace_file.exists()
    objects = written(tmp_path / "t.json.0")
    assert [o["id"] for o in objects] == [1, 1, 2, 2, 3, 3]
    assert objects[0] == {"id": 1, "model_name": "m", "model_version": 1}
    assert [m["name"] for m in objects[1]["timestamps"]][::7] == ["REQUEST_START", "REQUEST_END"]


def test_the_count_left_is_reported_and_starts_over_when_set_again() -> None:
    tracer = TritonTracer()
    settings = {"trace_level": ["TIMESTAMPS"], "trace_rate": ["1"], "trace_count": ["3"]}
    assert tracer.update_trace_settings("m", settings)["trace_count"] == ["3"]
    run(tracer, "m", 2)
    assert tracer.trace_settings("m")["trace_count"] == ["1"]
    tracer.update_trace_settings("m", {"trace_rate": ["2"]})  # another setting: counts on
    assert tracer.trace_settings("m")["trace_count"] == ["1"]
    run(tracer, "m", 4)
    assert tracer.trace_settings("m")["trace_count"] == ["0"]
    assert tracer.trace_settings()["trace_count"] == ["-1"]  # the global scope's: no limit
    assert tracer.update_trace_settings("m", {"trace_count": ["3"]})["trace_count"] == ["3"]
    run(tracer, "m", 2)
    assert tracer.trace_settings("m")["trace_count"] == ["2"]


def test_a_models_settings_override_the_global_ones_and_clear_back(tmp_path: Path) -> None:
    tracer = TritonTracer()
    own = {"trace_level": ["TIMESTAMPS"], "trace_rate": ["1"], "log_frequency": ["2"]}
    tracer.update_trace_settings("a", {**own, "trace_file": [str(tmp_path / "a.json")]})
    assert tracer.trace_settings("a")["trace_rate"] == ["1"]
    assert tracer.trace_settings("b") == tracer.trace_settings() == DEFAULTS
    run(tracer, "b", 10)  # global: off
    run(tracer, "a", 4)
    tracer.update_trace_settings("a", dict.fromkeys(["trace_level", "trace_rate", "log_frequency"]))
    assert tracer.trace_settings("a")["trace_level"] == ["OFF"]
    tracer.close()
    assert len(written(tmp_path / "a.json.0")) == 4  # two traces of two objects
    assert len(written(tmp_path / "a.json.1")) == 4
    assert not (tmp_path / "a.json.2").exists()


def test_clearing_a_global_setting_restores_its_start_up_value() -> None:
    tracer = TritonTracer(start_settings(["level=TIMESTAMPS", "rate=5"]))
    tracer.update_trace_settings("", {"trace_rate": ["7"], "trace_level": ["OFF"]})
    answer = tracer.update_trace_settings("", {"trace_rate": None, "trace_level": None})
    assert (answer["trace_rate"], answer["trace_level"]) == (["5"], ["TIMESTAMPS"])


def test_without_a_file_each_trace_is_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    tracer = TritonTracer(start_settings(["level=TIMESTAMPS", "rate=1"]))
    with caplog.at_level(logging.INFO, "inferd.trace"):
        run(tracer, "m", 2)
    lines = [r.getMessage() for r in caplog.records if r.name == "inferd.trace"]
    assert len(lines) == 2
    assert json.loads(lines[0].removeprefix("trace "))[0]["model_name"] == "m"


@pytest.mark.parametrize(
    "changes",
    [
        {"trace_level": ["OFF", "TIMESTAMPS"]},
        {"trace_level": []},
        {"trace_rate": ["1", "2"]},
        {"trace_count": ["-2"]},
        {"trace_count": ["10000000000"]},  # Triton's L0_trace: out of range
        {"log_frequency": ["2147483648"]},
        {"log_frequency": ["x"]},
        {"trace_mode": ["opentelemetry"]},
        {"trace_colour": ["1"]},
    ],
)
def test_bad_settings_are_refused_and_change_nothing(changes: dict[str, list[str]]) -> None:
    tracer = TritonTracer()
    with pytest.raises(InvalidArgument):
        tracer.update_trace_settings("", {"trace_rate": ["3"], **changes})
    assert tracer.trace_settings() == DEFAULTS


@pytest.mark.parametrize("item", ["level", "colour=red", "rate=0"])
def test_bad_start_up_settings_are_refused(item: str) -> None:
    with pytest.raises(InvalidArgument):
        start_settings([item])


@pytest.fixture
def logs() -> Iterator[ServerLogs]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    root.setLevel(logging.INFO)
    yield ServerLogs(0, lambda level: None)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_log_file_format_and_severities(logs: ServerLogs, tmp_path: Path) -> None:
    log_file = tmp_path / "server.log"
    logs.update_log_settings({"log_file": str(log_file), "log_format": "json", "log_info": False})
    logger = logging.getLogger("inferd.test")
    logger.info("hidden")
    logger.warning("shown")
    logs.update_log_settings({"log_format": "ISO8601", "log_warning": False})
    logger.warning("hidden too")
    logger.error("shown too")
    first, second = log_file.read_text().splitlines()
    assert json.loads(first)["message"] == "shown"
    assert json.loads(first)["level"] == "WARNING"
    assert second.endswith("ERROR inferd.test: shown too")
    assert second[:20].endswith("Z")  # 2026-12-03T14:48:09Z


@pytest.mark.parametrize(
    "changes",
    [
        {"log_format": "xml"},
        {"log_verbose_level": -1},
        {"log_verbose_level": True},
        {"log_info": 1},
        {"log_file": "/no/such/folder/x.log"},
        {"log_colour": "red"},
    ],
)
def test_bad_log_settings_are_refused(logs: ServerLogs, changes: dict[str, object]) -> None:
    before = logs.log_settings()
    with pytest.raises(InvalidArgument):
        logs.update_log_settings(changes)  # type: ignore[arg-type]
    assert logs.log_settings() == before
