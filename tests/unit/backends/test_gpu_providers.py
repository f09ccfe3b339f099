"""ONNX Runtime's GPU providers from the config: Triton's TensorRT accelerator settings."""

from __future__ import annotations

import pytest

from inferd.backends.onnxruntime import tensorrt_options
from inferd.core.errors import InvalidArgument
from inferd.core.model_config import parse_pbtxt

TENSORRT = """
optimization { execution_accelerators { gpu_execution_accelerator : [ {
  name : "tensorrt"
  parameters { key: "precision_mode" value: "%s" }
  parameters { key: "max_workspace_size_bytes" value: "1073741824" }
  parameters { key: "trt_engine_cache_enable" value: "True" }
} ] } }
"""


def test_no_accelerator_means_no_tensorrt() -> None:
    assert tensorrt_options(parse_pbtxt('name: "m"')) is None


def test_triton_tensorrt_accelerator_becomes_provider_options() -> None:
    assert tensorrt_options(parse_pbtxt(TENSORRT % "FP16")) == {
        "trt_fp16_enable": "True",
        "trt_max_workspace_size": "1073741824",
        "trt_engine_cache_enable": "True",
    }
    assert "trt_fp16_enable" not in (tensorrt_options(parse_pbtxt(TENSORRT % "FP32")) or {})


def test_unknown_accelerator_parameter_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="precision_mode: FP4"):
        tensorrt_options(parse_pbtxt(TENSORRT % "FP4"))
