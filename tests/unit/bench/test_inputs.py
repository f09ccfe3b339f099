from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inferd.bench.inputs import InputMetadata, ModelInfo, build_requests
from inferd.core.datatypes import DATATYPES, numpy_dtype
from inferd.core.errors import InvalidArgument, NotFound


def model(*inputs: InputMetadata, max_batch_size: int = 8) -> ModelInfo:
    return ModelInfo("m", "", inputs, max_batch_size)


@pytest.mark.parametrize("datatype", DATATYPES)
@pytest.mark.parametrize("data", ["random", "zero"])
def test_every_datatype_is_generated(datatype: str, data: str) -> None:
    (request,) = build_requests(model(InputMetadata("x", datatype, (-1, 2, 3))), 4, {}, data)
    array = request["x"]
    assert array.shape == (4, 2, 3)
    assert array.dtype == numpy_dtype(datatype)
    if datatype == "BYTES":
        assert all(isinstance(item, bytes) and item for item in array.flat)
    elif data == "zero":
        assert not array.astype(np.float64).any()


def test_random_data_is_not_constant() -> None:
    (request,) = build_requests(model(InputMetadata("x", "FP32", (-1, 64))), 1, {}, "random")
    assert np.unique(request["x"]).size > 1


def test_non_batching_model_uses_its_full_shape() -> None:
    info = model(InputMetadata("x", "INT64", (-1, 5)), max_batch_size=0)
    (request,) = build_requests(info, 1, {"x": (3, 5)}, "zero")
    assert request["x"].shape == (3, 5)
    with pytest.raises(InvalidArgument, match="does not batch"):
        build_requests(info, 2, {"x": (3, 5)}, "zero")


def test_shape_fills_variable_dims_only() -> None:
    info = model(InputMetadata("x", "FP32", (-1, -1, 4)))
    (request,) = build_requests(info, 2, {"x": (7, 4)}, "random")
    assert request["x"].shape == (2, 7, 4)
    with pytest.raises(InvalidArgument, match="--shape x:d1,d2"):
        build_requests(info, 1, {}, "random")
    with pytest.raises(InvalidArgument, match="does not fit"):
        build_requests(info, 1, {"x": (7, 5)}, "random")
    with pytest.raises(NotFound, match="y"):
        build_requests(info, 1, {"y": (1,)}, "random")


def test_file_data_round_robin_entries(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    entries = [
        {"a": [1, 2, 3], "s": ["x", "yz"]},
        {"a": {"content": [4, 5, 6], "shape": [3]}, "s": {"content": ["p", "q"], "shape": [2]}},
        {"a": {"b64": "BwAAAAgAAAAJAAAA"}, "s": ["k", "l"]},  # int32 7, 8, 9
    ]
    path.write_text(json.dumps({"data": entries}))
    info = model(InputMetadata("a", "INT32", (-1, 3)), InputMetadata("s", "BYTES", (-1, 2)))
    requests = build_requests(info, 2, {}, str(path))
    assert [r["a"].tolist() for r in requests] == [
        [[1, 2, 3]] * 2,
        [[4, 5, 6]] * 2,
        [[7, 8, 9]] * 2,
    ]
    assert requests[0]["s"].tolist() == [[b"x", b"yz"]] * 2


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("not json", "--input-data"),
        ('{"rows": []}', "expected"),
        ('{"data": [{"b": [1, 2, 3]}]}', "no input 'a'"),
        ('{"data": [{"a": [1, 2]}]}', "input 'a'"),
    ],
)
def test_bad_input_files(tmp_path: Path, document: str, message: str) -> None:
    path = tmp_path / "data.json"
    path.write_text(document)
    with pytest.raises(InvalidArgument, match=message):
        build_requests(model(InputMetadata("a", "INT32", (-1, 3))), 1, {}, str(path))
