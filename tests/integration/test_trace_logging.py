"""Triton's trace and logging extensions on a running server, through tritonclient over HTTP
and gRPC: settings change at run time and the server behaves accordingly (trace files get
one trace per `trace_rate` requests, `trace_count` stops them, verbose lines appear once the
level is raised, the format and the log file follow their settings)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.server import RunningServer, running_server
from tests.integration.test_cancellation import eventually

MARKS = [
    "REQUEST_START",
    "QUEUE_START",
    "COMPUTE_START",
    "COMPUTE_INPUT_END",
    "COMPUTE_OUTPUT_START",
    "COMPUTE_END",
    "INFER_RESPONSE_COMPLETE",
    "REQUEST_END",
]
HTTP_SEND = ["HTTP_SEND_START", "HTTP_SEND_END"]  # the answer was sent (after REQUEST_END)


@pytest.fixture(scope="module")
def server(model_repository: Path) -> Iterator[RunningServer]:
    with running_server(model_repository) as running:
        yield running


def infer(server: RunningServer, times: int, model: str = "simple") -> None:
    inputs = [httpclient.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    for item in inputs:
        item.set_data_from_numpy(np.ones((1, 16), np.int32))
    with closing(httpclient.InferenceServerClient(server.http_url)) as client:
        for _ in range(times):
            client.infer(model, inputs)


def traces(path: Path) -> list[dict[str, Any]]:
    """The traces of one Triton trace file: each trace's objects merged by id."""
    merged: dict[int, dict[str, Any]] = {}
    for item in json.loads(path.read_text()):
        merged.setdefault(item["id"], {}).update(item)
    return list(merged.values())


@pytest.fixture(params=["http", "grpc"])
def client(request: pytest.FixtureRequest, server: RunningServer) -> Iterator[Any]:
    module = httpclient if request.param == "http" else grpcclient
    url = server.http_url if request.param == "http" else server.grpc_url
    with closing(module.InferenceServerClient(url)) as opened:
        yield opened


def settings(answer: Any) -> dict[str, Any]:
    """Trace settings as HTTP gives them, from either client's answer."""
    if "settings" not in answer:
        return dict(answer)
    values = {key: item.get("value", []) for key, item in answer["settings"].items()}
    return {key: v if key == "trace_level" else (v[0] if v else "") for key, v in values.items()}


def get_trace(client: Any, model: str = "") -> dict[str, Any]:
    if isinstance(client, grpcclient.InferenceServerClient):
        return settings(client.get_trace_settings(model, as_json=True))
    return settings(client.get_trace_settings(model))


def update_trace(client: Any, model: str, values: dict[str, Any]) -> dict[str, Any]:
    if isinstance(client, grpcclient.InferenceServerClient):
        return settings(client.update_trace_settings(model, values, as_json=True))
    return settings(client.update_trace_settings(model, values))


def test_both_extensions_are_listed(client: Any) -> None:
    metadata = client.get_server_metadata()
    extensions = metadata["extensions"] if isinstance(metadata, dict) else metadata.extensions
    assert {"trace", "logging"} <= set(extensions)


def test_trace_files_get_one_trace_per_rate_requests(
    server: RunningServer, client: Any, tmp_path: Path
) -> None:
    trace_file = tmp_path / "trace.json"
    answer = update_trace(
        client,
        "",
        {
            "trace_level": ["TIMESTAMPS"],
            "trace_rate": "3",
            "log_frequency": "2",
            "trace_file": str(trace_file),
        },
    )
    assert answer["trace_rate"] == "3"
    try:
        infer(server, 12)  # 4 traces: two files of 2
        eventually(lambda: (tmp_path / "trace.json.1").exists())
        for index in (0, 1):
            written = traces(tmp_path / f"trace.json.{index}")
            assert len(written) == 2
            for trace in written:
                assert (trace["model_name"], trace["model_version"]) == ("simple", 1)
                names = [mark["name"] for mark in trace["timestamps"]]
                # Between the frontend's (HTTP_RECV_START, ... and HTTP_SEND_START, ...).
                assert names[2:-2] == MARKS
                assert names[-2:] == HTTP_SEND
                times = [mark["ns"] for mark in trace["timestamps"]]
                assert times == sorted(times)
        assert not (tmp_path / "trace.json.2").exists()
    finally:
        update_trace(client, "", dict.fromkeys(("trace_level", "trace_rate")))
    assert get_trace(client)["trace_level"] == ["OFF"]


def test_a_models_own_settings_and_trace_count(
    server: RunningServer, client: Any, tmp_path: Path
) -> None:
    trace_file = tmp_path / "model.json"
    own = {
        "trace_level": ["TIMESTAMPS"],
        "trace_rate": "1",
        "trace_count": "2",
        "log_frequency": "1",
        "trace_file": str(trace_file),
    }
    update_trace(client, "simple", own)
    assert get_trace(client, "simple")["trace_count"] == "2"
    assert get_trace(client)["trace_level"] == ["OFF"]  # the global settings stay
    try:
        infer(server, 5)
        eventually(lambda: (tmp_path / "model.json.1").exists())
        assert len(traces(tmp_path / "model.json.0")) == 1
        assert not (tmp_path / "model.json.2").exists()  # the count stopped it at 2
        assert get_trace(client, "simple")["trace_count"] == "0"  # as Triton: none left
    finally:
        update_trace(client, "simple", dict.fromkeys(own))
    assert get_trace(client, "simple") == get_trace(client)  # back to the global ones


def test_the_count_left_is_answered_and_starts_over_when_set_again(
    server: RunningServer, client: Any, tmp_path: Path
) -> None:
    own = {
        "trace_level": ["TIMESTAMPS"],
        "trace_rate": "1",
        "trace_count": "3",
        "trace_file": str(tmp_path / "count.json"),
    }
    assert update_trace(client, "simple", own)["trace_count"] == "3"
    try:
        infer(server, 2)
        assert get_trace(client, "simple")["trace_count"] == "1"
        infer(server, 2)
        assert get_trace(client, "simple")["trace_count"] == "0"
        assert update_trace(client, "simple", {"trace_count": "3"})["trace_count"] == "3"
        infer(server, 1)
        assert get_trace(client, "simple")["trace_count"] == "2"
    finally:
        update_trace(client, "simple", dict.fromkeys(own))


@pytest.mark.parametrize(
    "bad",
    [
        {"trace_level": ["LOUD"]},
        {"trace_rate": "0"},
        {"trace_count": "many"},
        {"trace_mode": "opentelemetry"},
        {"no_such_setting": "1"},
    ],
)
def test_bad_trace_settings_are_refused(client: Any, bad: dict[str, Any]) -> None:
    with pytest.raises(InferenceServerException) as caught:
        update_trace(client, "", bad)
    assert caught.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    assert get_trace(client)["trace_rate"] == "1000"


def test_settings_of_an_unknown_model_are_not_found(client: Any) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.get_trace_settings("nope")
    assert caught.value.status() in ("404", "StatusCode.NOT_FOUND")


def test_an_unknown_models_settings_are_refused_in_tritons_words(client: Any) -> None:
    with pytest.raises(InferenceServerException) as caught:
        update_trace(client, "nope", {"trace_rate": "1"})
    # Triton's QA (qa/L0_trace/trace_endpoint_test.py) matches this phrase.
    assert "Request for unknown model : nope" in caught.value.message()


def test_verbose_lines_appear_once_the_level_is_raised(server: RunningServer, client: Any) -> None:
    before = client.get_log_settings()
    assert _log(before)["log_verbose_level"] == 0
    infer(server, 1)
    assert not [line for line in server.log if "request model=simple" in line]
    client.update_log_settings({"log_verbose_level": 1})
    try:
        infer(server, 1)
        eventually(lambda: any("request model=simple" in line for line in server.log))
    finally:
        client.update_log_settings({"log_verbose_level": 0})
        server.log.clear()


def test_json_lines_and_a_log_file(server: RunningServer, client: Any, tmp_path: Path) -> None:
    log_file = tmp_path / "server.log"
    answer = client.update_log_settings(
        {"log_format": "json", "log_file": str(log_file), "log_verbose_level": 1}
    )
    assert _log(answer)["log_file"] == str(log_file)
    try:
        infer(server, 1)
        eventually(lambda: log_file.exists() and "request model=simple" in log_file.read_text())
        lines = [json.loads(line) for line in log_file.read_text().splitlines()]
        assert {"time", "level", "logger", "message"} <= set(lines[-1])
    finally:
        client.update_log_settings(
            {"log_format": "default", "log_file": "", "log_verbose_level": 0}
        )
    assert _log(client.get_log_settings())["log_format"] == "default"


@pytest.mark.parametrize(
    "bad", [{"log_format": "xml"}, {"log_info": "yes"}, {"log_nonsense": True}]
)
def test_bad_log_settings_are_refused(client: Any, bad: dict[str, Any]) -> None:
    if isinstance(client, grpcclient.InferenceServerClient) and bad == {"log_info": "yes"}:
        pytest.skip("tritonclient.grpc sends log_info as a bool: it cannot be wrong")
    with pytest.raises(InferenceServerException) as caught:
        client.update_log_settings(bad)
    assert caught.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")


def _log(answer: Any) -> dict[str, Any]:
    """Log settings as HTTP gives them, from either client's answer."""
    if hasattr(answer, "settings"):
        return {
            key: getattr(item, item.WhichOneof("parameter_choice"))
            for key, item in answer.settings.items()
        }
    return dict(answer)


def test_start_up_trace_settings(model_repository: Path, tmp_path: Path) -> None:
    trace_file = tmp_path / "start.json"
    flags = ["--trace-config", "level=TIMESTAMPS", "--trace-config", "rate=1"]
    with running_server(
        model_repository, *flags, "--trace-config", f"file={trace_file}"
    ) as started:
        with closing(httpclient.InferenceServerClient(started.http_url)) as client:
            assert client.get_trace_settings()["trace_level"] == ["TIMESTAMPS"]
        infer(started, 2)
    assert len(traces(trace_file)) == 2  # log_frequency 0: written as the server stops
