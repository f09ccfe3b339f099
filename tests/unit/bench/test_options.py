from __future__ import annotations

import pytest

from inferd.bench.options import BenchOptions, normalize_url, parse_shape, parse_steps
from inferd.core.errors import InvalidArgument


@pytest.mark.parametrize(
    ("text", "integer", "expected"),
    [
        ("4", True, (4,)),
        ("1:4", True, (1, 2, 3, 4)),
        ("1:8:3", True, (1, 4, 7)),
        ("1:32:x2", True, (1, 2, 4, 8, 16, 32)),
        ("1:10:x1.5", True, (1, 2, 3, 5, 8)),  # rounding repeats 2 (1.5 and 2.25): kept once
        ("0.1:0.3:0.1", False, (0.1, 0.2, 0.30000000000000004)),
        ("100:300:100", False, (100, 200, 300)),
    ],
)
def test_parse_steps(text: str, integer: bool, expected: tuple[float, ...]) -> None:
    assert parse_steps(text, integer) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text", ["", "a", "0", "4:1", "1:4:0", "1:4:x1", "1:2:3:4", "1:inf", "1.5"]
)
def test_parse_steps_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_steps(text, integer=True)


def test_parse_steps_rejects_endless_ranges() -> None:
    with pytest.raises(InvalidArgument, match="more than"):
        parse_steps("1:100000", integer=True)


def test_parse_shape() -> None:
    assert parse_shape("INPUT0:3,4") == ("INPUT0", (3, 4))
    assert parse_shape("ns:name:2") == ("ns:name", (2,))
    assert parse_shape("scalar:") == ("scalar", ())


@pytest.mark.parametrize("text", ["INPUT0", ":3", "INPUT0:3,x", "INPUT0:0", "INPUT0:-1"])
def test_parse_shape_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_shape(text)


def test_normalize_url() -> None:
    assert normalize_url(None, "http") == "localhost:8000"
    assert normalize_url("", "grpc") == "localhost:8001"
    assert normalize_url("http://host:9000/", "http") == "host:9000"
    assert normalize_url("host:9001", "grpc") == "host:9001"


def test_streaming_names_its_transport() -> None:
    assert BenchOptions("m", "u", "grpc", streaming=True).run_label == "m @ u (grpc stream)"
    assert BenchOptions("m", "u", "http", streaming=True).run_label == "m @ u (http sse)"
    assert BenchOptions("m", "u", "http").run_label == "m @ u (http)"


def test_sse_streams_one_sample_per_request() -> None:
    with pytest.raises(InvalidArgument, match="one sample per request"):
        BenchOptions("m", "u", "http", streaming=True, batch_size=2)
    assert BenchOptions("m", "u", "grpc", streaming=True, batch_size=2).batch_size == 2
