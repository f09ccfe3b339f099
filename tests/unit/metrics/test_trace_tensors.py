"""Tensors in Triton's trace format: each datatype's values as Triton writes them, and the
tracer keeping a request's tensors only while its model is traced at level TENSORS."""

from __future__ import annotations

import json
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from inferd.core.observer import TENSOR_BACKEND_OUTPUT, TENSOR_QUEUE_INPUT
from inferd.core.types import Array, Timestamps
from inferd.metrics.trace_tensors import tensor_object
from inferd.metrics.triton_trace import TritonTracer


@pytest.mark.parametrize(
    ("array", "data", "dtype"),
    [
        (np.array([[1, -2], [3, 4]], np.int8), "1,-2,3,4", "INT8"),
        (np.array([2**63], np.uint64), "9223372036854775808", "UINT64"),
        (np.array([True, False]), "1,0", "BOOL"),
        (np.array([0.1, 1e-7, 123456789.0], np.float32), "0.1,1e-07,1.23457e+08", "FP32"),
        (np.array([0.5, 2.0], np.float16), "0.5,2", "FP16"),
        (np.array([1.5], ml_dtypes.bfloat16), "1.5", "BF16"),
        (np.array([b"a b", "é".encode()], np.object_), '"a b","é"', "BYTES"),
    ],
)
def test_each_datatype_as_triton_writes_it(array: Array, data: str, dtype: str) -> None:
    item = tensor_object(7, (TENSOR_QUEUE_INPUT, "x", array))
    shape = ",".join(str(d) for d in array.shape)
    assert item == {
        "id": 7,
        "activity": "TENSOR_QUEUE_INPUT",
        "tensor": {"name": "x", "data": data, "shape": shape, "dtype": dtype},
    }


def test_tensors_are_kept_only_for_models_traced_at_that_level(tmp_path: Path) -> None:
    tracer = TritonTracer()
    assert not tracer.tensors_on
    settings = {
        "trace_level": ["TENSORS"],
        "trace_rate": ["1"],
        "trace_file": [str(tmp_path / "t")],
    }
    tracer.update_trace_settings("traced", settings)
    assert tracer.tensors_on
    for model in ("traced", "other"):
        marks = Timestamps(1, 2, 3, 4, 5, 6, 7)
        tracer.request_arrived(model, marks, "")
        tracer.request_tensors(model, marks, TENSOR_QUEUE_INPUT, {"in": np.array([1])})
        tracer.request_tensors(model, marks, TENSOR_BACKEND_OUTPUT, {"out": np.array([2])})
        tracer.request_finished(model, "1", marks, True)
    tracer.close()
    objects = json.loads((tmp_path / "t").read_text())
    assert objects[0]["model_name"] == "traced"
    assert [o["tensor"]["name"] for o in objects[1:]] == ["in", "out"]  # and no timestamps
    assert not tracer._tensors  # nothing kept after the requests finished
    tracer.update_trace_settings("traced", dict.fromkeys(settings))
    assert not tracer.tensors_on
