"""Warmup samples built from `model_warmup`: shapes, data and what is refused."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from inferd.core.errors import InvalidArgument
from inferd.core.model_config import parse_pbtxt
from inferd.engine.warmup import warmup_samples

CONFIG = """
name: "m"
max_batch_size: {batch}
input [ {{ name: "X", data_type: TYPE_FP32, dims: [ 2, 2 ], reshape: {{ shape: [ 4 ] }} }},
        {{ name: "S", data_type: TYPE_STRING, dims: [ 2 ] }} ]
output [ {{ name: "Y", data_type: TYPE_FP32, dims: [ 4 ] }} ]
model_warmup [ {{ name: "w" batch_size: {rows} count: {count}
  inputs {{ key: "X" value: {{ data_type: TYPE_FP32, dims: [ {dims} ], {x} }} }}
  inputs {{ key: "S" value: {{ data_type: TYPE_STRING, dims: [ 2 ], {s} }} }} }} ]
"""


def _samples(tmp_path: Path, batch: int = 8, rows: int = 3, count: int = 0, **data: str) -> list:
    text = CONFIG.format(
        batch=batch,
        rows=rows,
        count=count,
        dims=data.get("dims", "2, 2"),
        x=data.get("x", "zero_data: true"),
        s=data.get("s", "random_data: true"),
    )
    return list(warmup_samples(parse_pbtxt(text), tmp_path))


def test_a_batched_sample_stacks_its_rows_and_applies_the_reshape(tmp_path: Path) -> None:
    (sample,) = _samples(tmp_path, count=2)
    assert (sample.requests, sample.executions, sample.count) == (3, 1, 2)
    assert sample.inputs["X"].shape == (3, 4) and not sample.inputs["X"].any()
    assert sample.inputs["S"].tolist() == [[b"", b""]] * 3


def test_an_unbatched_sample_is_one_request_per_execution(tmp_path: Path) -> None:
    (sample,) = _samples(tmp_path, batch=0, rows=2)
    assert (sample.requests, sample.executions, sample.count) == (1, 2, 1)
    assert sample.inputs["X"].shape == (4,)


def test_file_data_is_read_from_the_warmup_folder(tmp_path: Path) -> None:
    (tmp_path / "warmup").mkdir()
    (tmp_path / "warmup" / "x").write_bytes(np.arange(5, dtype=np.float32).tobytes())
    strings = b"".join(struct.pack("<I", len(s)) + s for s in (b"a", b"bc"))
    (tmp_path / "warmup" / "s").write_bytes(strings)
    x, s = 'input_data_file: "x"', 'input_data_file: "s"'
    (sample,) = _samples(tmp_path, rows=1, x=x, s=s)
    assert sample.inputs["X"].tolist() == [[0.0, 1.0, 2.0, 3.0]]  # the first 16 bytes
    assert sample.inputs["S"].tolist() == [[b"a", b"bc"]]


def test_batch_size_zero_is_skipped(tmp_path: Path) -> None:
    assert _samples(tmp_path, rows=0) == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dims": "-1, 2"}, "input 'X' needs every dimension set, not [-1, 2]"),
        ({"rows": 9}, "batch_size 9 exceeds max_batch_size 8"),
        ({"x": 'input_data_file: "../../etc/passwd"'}, "is outside the warmup folder"),
        ({"x": 'input_data_file: "none"'}, "input 'X': cannot read warmup/none"),
        ({"x": ""}, "input 'X' sets none of zero_data, random_data, input_data_file"),
    ],
)
def test_a_sample_that_cannot_be_built_is_refused_by_name(
    tmp_path: Path, changes: dict, message: str
) -> None:
    with pytest.raises(InvalidArgument, match="warmup sample 'w': ") as caught:
        _samples(tmp_path, **changes)
    assert message in caught.value.message
