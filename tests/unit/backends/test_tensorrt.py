"""The TensorRT backend's logic that needs no GPU: datatypes, profiles, auto-complete, refusals."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from inferd.backends.registry import BackendRegistry
from inferd.backends.tensorrt import TensorRTBackend
from inferd.backends.tensorrt.plan import (
    CONFIG_TYPE_BY_TRT,
    IOTensor,
    PlanSignature,
    ProfileRange,
    complete_tensors,
    config_type,
)
from inferd.core.datatypes import from_config_datatype, numpy_dtype
from inferd.core.errors import InvalidArgument, Unavailable, Unsupported
from inferd.core.model_config import ModelConfig, config_to_dict, parse_pbtxt

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _signature(*profiles: tuple[int, int], first: int = -1) -> PlanSignature:
    """An input `x` [first, 4] FP32 and output `y` [first, 2], with batch ranges per profile."""
    ranges = tuple(ProfileRange((low, 4), (high, 4)) for low, high in profiles)
    return PlanSignature(
        (
            IOTensor("x", True, "TYPE_FP32", (first, 4), ranges),
            IOTensor("y", False, "TYPE_FP32", (first, 2)),
        ),
        len(profiles),
    )


def test_every_mapped_trt_type_has_a_numpy_dtype() -> None:
    dtypes = {
        name: numpy_dtype(from_config_datatype(t)).name for name, t in CONFIG_TYPE_BY_TRT.items()
    }
    assert dtypes == {
        "FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8",
        "INT32": "int32", "INT64": "int64", "BOOL": "bool", "UINT8": "uint8",
    }  # fmt: skip
    with pytest.raises(Unsupported, match="FP8"):
        config_type("FP8", "scale")


def test_batch_capacity_is_the_largest_profile_admitting_batch_one() -> None:
    assert _signature((1, 8), (1, 32)).batch_capacity() == 32
    assert _signature((4, 64), (1, 16)).batch_capacity() == 16
    assert _signature((2, 8)).batch_capacity() == 0  # batch 1 would fit no profile
    assert _signature((1, 8), first=8).batch_capacity() == 0  # fixed first dimension


def test_profile_for_picks_the_first_fitting_profile() -> None:
    signature = _signature((1, 4), (5, 16))
    assert signature.profile_for({"x": (3, 4)}) == 0
    assert signature.profile_for({"x": (9, 4)}) == 1
    with pytest.raises(InvalidArgument, match=r"'x' \[17, 4\] not in \[1, 4\]..\[4, 4\] or"):
        signature.profile_for({"x": (17, 4)})


def test_complete_config_from_the_plan() -> None:
    config = ModelConfig(name="trt")
    complete_tensors(config, _signature((1, 8), (1, 32)), default_max_batch_size=4)
    as_dict = config_to_dict(config)
    assert as_dict["max_batch_size"] == 32  # the profiles' capacity, not the server default
    assert [(t["name"], t["data_type"], t["dims"]) for t in as_dict["input"]] == [
        ("x", "TYPE_FP32", [4])
    ]
    unbatched = ModelConfig(name="trt")
    complete_tensors(unbatched, _signature((1, 8)), default_max_batch_size=0)
    assert unbatched.max_batch_size == 0 and list(unbatched.input[0].dims) == [-1, 4]


def test_config_checked_against_the_plan() -> None:
    too_big = parse_pbtxt("max_batch_size: 64")
    with pytest.raises(InvalidArgument, match="exceeds the largest batch"):
        complete_tensors(too_big, _signature((1, 8)), 4)
    wrong_type = parse_pbtxt('input [{name: "x" data_type: TYPE_FP16 dims: [-1, 4]}]')
    with pytest.raises(InvalidArgument, match="TYPE_FP16, the plan has TYPE_FP32"):
        complete_tensors(wrong_type, _signature((1, 8)), 0)
    unknown = parse_pbtxt('input [{name: "z" data_type: TYPE_FP32 dims: [-1, 4]}]')
    with pytest.raises(InvalidArgument, match="not in the TensorRT plan"):
        complete_tensors(unknown, _signature((1, 8)), 0)


def test_kind_cpu_is_refused_before_touching_tensorrt(tmp_path: Path) -> None:
    config = parse_pbtxt('name: "trt" instance_group [{name: "cpus" kind: KIND_CPU}]')
    with pytest.raises(Unsupported, match="'cpus' is KIND_CPU: TensorRT plans run on KIND_GPU"):
        TensorRTBackend().load(config, tmp_path)


def test_registered_by_platform_and_file(tmp_path: Path) -> None:
    (tmp_path / "model.plan").write_bytes(b"not a plan")
    registry = BackendRegistry()
    assert registry.resolve(ModelConfig(platform="tensorrt_plan"), []).name == "tensorrt"
    assert registry.resolve(ModelConfig(), [tmp_path]).name == "tensorrt"


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here")
def test_missing_tensorrt_is_a_clear_unavailable(tmp_path: Path) -> None:
    (tmp_path / "model.plan").write_bytes(b"not a plan")
    backend = TensorRTBackend()
    assert not backend.gpu_available()
    with pytest.raises(Unavailable, match=r"needs the 'tensorrt' package.*inferd\[tensorrt\]"):
        backend.complete_config(ModelConfig(name="trt"), tmp_path, 4)
