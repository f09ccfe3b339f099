from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto

import generate_models
from inferd.backends.base import Device, DeviceKind
from inferd.backends.onnxruntime import OnnxRuntimeBackend, session_options
from inferd.backends.registry import BackendRegistry
from inferd.core.errors import InvalidArgument, Unavailable
from inferd.core.model_config import ModelConfig, config_to_dict, parse_pbtxt


@pytest.fixture
def mlp_version(tmp_path: Path) -> Path:
    generate_models.mlp_model(tmp_path / "1" / "model.onnx", (8, 16, 4))
    return tmp_path / "1"


def test_complete_empty_config(mlp_version: Path) -> None:
    config = ModelConfig(name="mlp")
    OnnxRuntimeBackend().complete_config(config, mlp_version, default_max_batch_size=4)
    as_dict = config_to_dict(config)
    assert as_dict["backend"] == "onnxruntime"
    assert as_dict["platform"] == "onnxruntime_onnx"
    assert as_dict["max_batch_size"] == 4
    assert [(t["name"], t["data_type"], t["dims"]) for t in as_dict["input"]] == [
        ("input", "TYPE_FP32", [8])
    ]
    assert [(t["name"], t["data_type"], t["dims"]) for t in as_dict["output"]] == [
        ("output", "TYPE_FP32", [4])
    ]


def test_complete_keeps_given_batch_size_and_fills_outputs(mlp_version: Path) -> None:
    config = parse_pbtxt(
        'name: "mlp" max_batch_size: 16 input [{name: "input" data_type: TYPE_FP32 dims: [8]}]'
    )
    OnnxRuntimeBackend().complete_config(config, mlp_version, default_max_batch_size=4)
    assert config.max_batch_size == 16
    assert [tuple(t.dims) for t in config.output] == [(4,)]


def test_zero_default_batch_size_keeps_batch_axis_in_dims(tmp_path: Path) -> None:
    generate_models.simple_model(tmp_path / "1" / "model.onnx", TensorProto.INT32, width=16)
    config = ModelConfig(name="simple")
    OnnxRuntimeBackend().complete_config(config, tmp_path / "1", default_max_batch_size=0)
    assert config.max_batch_size == 0
    assert [tuple(t.dims) for t in config.input] == [(-1, 16), (-1, 16)]


def test_config_input_not_in_model(mlp_version: Path) -> None:
    config = parse_pbtxt('name: "mlp" input [{name: "nope" data_type: TYPE_FP32 dims: [8]}]')
    with pytest.raises(InvalidArgument, match="not in the ONNX model"):
        OnnxRuntimeBackend().complete_config(config, mlp_version, 4)


def test_missing_or_corrupt_model_file(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    with pytest.raises(InvalidArgument, match="not found"):
        OnnxRuntimeBackend().complete_config(ModelConfig(name="m"), tmp_path / "1", 4)
    (tmp_path / "1" / "model.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(InvalidArgument, match="cannot read"):
        OnnxRuntimeBackend().complete_config(ModelConfig(name="m"), tmp_path / "1", 4)


def test_session_options_from_parameters() -> None:
    config = parse_pbtxt(
        'parameters { key: "intra_op_thread_count" value { string_value: "1" } }'
        'parameters { key: "inter_op_thread_count" value { string_value: "2" } }'
        'parameters { key: "graph_optimization_level" value { string_value: "basic" } }'
    )
    options = session_options(config)
    assert options.intra_op_num_threads == 1
    assert options.inter_op_num_threads == 2
    assert int(options.graph_optimization_level) == 1


def test_bad_session_parameters() -> None:
    with pytest.raises(InvalidArgument, match="integer"):
        session_options(
            parse_pbtxt('parameters { key: "intra_op_thread_count" value { string_value: "x" } }')
        )
    with pytest.raises(InvalidArgument, match="graph_optimization_level"):
        session_options(
            parse_pbtxt(
                'parameters { key: "graph_optimization_level" value { string_value: "max" } }'
            )
        )


def test_instances_share_one_session_and_compute(mlp_version: Path) -> None:
    config = ModelConfig(name="mlp")
    backend = OnnxRuntimeBackend()
    backend.complete_config(config, mlp_version, 4)
    model = backend.load(config, mlp_version)
    cpu = Device(DeviceKind.CPU)
    assert model.session(cpu) is model.session(cpu)
    instance = model.create_instance(cpu, "mlp_0")
    assert instance.runs_on_loop  # on CPU a run may be made from the event loop (base.py)
    out = instance.execute({"input": np.ones((2, 8), np.float32)}, ["output"], [])
    assert out["output"].shape == (2, 4)
    with pytest.raises(InvalidArgument, match="rejected"):
        instance.execute({"input": np.ones((2, 9), np.float32)}, ["output"], [])


def test_a_feed_without_a_required_input_is_refused_before_the_graph_runs(
    tmp_path: Path,
) -> None:
    # ONNX Runtime's own check names what is missing (no kernel runs half a graph).
    generate_models.simple_model(tmp_path / "1" / "model.onnx", TensorProto.INT32, width=16)
    config = ModelConfig(name="simple")
    backend = OnnxRuntimeBackend()
    backend.complete_config(config, tmp_path / "1", 4)
    instance = backend.load(config, tmp_path / "1").create_instance(Device(DeviceKind.CPU), "s")
    data = np.arange(16, dtype=np.int32).reshape(1, 16)
    both = instance.execute({"INPUT0": data, "INPUT1": data}, ["OUTPUT0", "OUTPUT1"], [])
    assert both["OUTPUT0"].tolist() == (data * 2).tolist()
    with pytest.raises(ValueError, match=r"Required inputs \(\['INPUT1'\]\) are missing"):
        instance.execute({"INPUT0": data}, ["OUTPUT0"], [])


def test_gpu_without_cuda_is_unavailable(mlp_version: Path) -> None:
    backend = OnnxRuntimeBackend()
    if backend.gpu_available():
        pytest.skip("this machine has a CUDA provider")
    config = ModelConfig(name="mlp")
    backend.complete_config(config, mlp_version, 4)
    with pytest.raises(Unavailable, match="CUDA"):
        backend.load(config, mlp_version).create_instance(Device(DeviceKind.GPU, 0), "mlp_0")


def test_registry_finds_builtin_by_entry_point(mlp_version: Path) -> None:
    registry = BackendRegistry()
    assert "onnxruntime" in registry.names()
    assert registry.resolve(ModelConfig(), [mlp_version]).name == "onnxruntime"
    assert registry.resolve(ModelConfig(platform="onnxruntime_onnx"), []).name == "onnxruntime"
    with pytest.raises(InvalidArgument, match="unknown backend"):
        registry.get("nope")
    with pytest.raises(InvalidArgument, match="unknown platform"):
        registry.resolve(ModelConfig(platform="caffe2_netdef"), [])


def test_broken_plugin_is_skipped(mlp_version: Path) -> None:
    def broken() -> OnnxRuntimeBackend:
        raise ImportError("missing framework")

    registry = BackendRegistry({"aaa_broken": broken, "onnxruntime": OnnxRuntimeBackend})
    assert registry.resolve(ModelConfig(), [mlp_version]).name == "onnxruntime"
    with pytest.raises(Unavailable, match="missing framework"):
        registry.get("aaa_broken")


@pytest.fixture
def string_identity(tmp_path: Path) -> Any:
    generate_models.identity_model(tmp_path / "1" / "model.onnx", TensorProto.STRING)
    config = ModelConfig(name="strings")
    backend = OnnxRuntimeBackend()
    backend.complete_config(config, tmp_path / "1", 4)
    model = backend.load(config, tmp_path / "1")
    return model.create_instance(Device(DeviceKind.CPU), "strings_0")


@pytest.mark.parametrize(
    "elements",
    [
        [b"a", "é".encode(), b"", b"x\x00y", b"long" * 100, b"b", b"c", b"d"],  # bytes
        ["a", "é", "", "x\x00y", "s", "t", "u", "v"],  # str: an ONNX string output fed on
        [b"a", "b", np.bytes_(b"c"), 4, b"e", b"f", b"g", b"h"],  # anything else is formatted
    ],
)
def test_string_inputs_reach_the_model_as_text(string_identity: Any, elements: list[Any]) -> None:
    array = np.empty(8, dtype=np.object_)
    array[:] = elements
    columns = array.reshape(4, 2).T  # not contiguous
    out = string_identity.execute({"INPUT0": columns}, ["OUTPUT0"], [])["OUTPUT0"]
    expected = [[e.decode() if isinstance(e, bytes) else str(e) for e in row] for row in columns]
    assert out.tolist() == expected
    assert columns.tolist() == array.reshape(4, 2).T.tolist()  # the request's array is kept


@pytest.mark.parametrize("elements", [[b"ok", b"\xff"], ["ok", b"\xff"], [b"\xc3", b"\xa9"]])
def test_string_input_that_is_not_utf8_is_invalid(
    string_identity: Any, elements: list[Any]
) -> None:
    array = np.empty((1, 2), dtype=np.object_)
    array[0, :] = elements
    with pytest.raises(InvalidArgument, match="BYTES input 'INPUT0' holds an element that is not"):
        string_identity.execute({"INPUT0": array}, ["OUTPUT0"], [])


@pytest.fixture
def defaulted_version(tmp_path: Path) -> Path:
    generate_models.affine_model(tmp_path / "1" / "model.onnx", 2.0, 1.0, overridable=True)
    return tmp_path / "1"


def test_an_initializer_listed_as_a_graph_input_is_an_optional_input(
    defaulted_version: Path,
) -> None:
    config = parse_pbtxt(
        'name: "affine" input [{name: "INPUT0" data_type: TYPE_FP32 dims: [-1, 4]}, '
        '{name: "scale" data_type: TYPE_FP32 dims: [1]}]'
    )
    backend = OnnxRuntimeBackend()
    backend.complete_config(config, defaulted_version, 0)
    assert [(t.name, t.optional) for t in config.input] == [("INPUT0", False), ("scale", True)]
    instance = backend.load(config, defaulted_version).create_instance(Device(DeviceKind.CPU), "a")
    x = np.ones((2, 4), np.float32)
    # Left out, the model's own default (2) applies; given, it overrides it.
    default = instance.execute({"INPUT0": x}, ["OUTPUT0"], [])
    np.testing.assert_array_equal(default["OUTPUT0"], x * 3)
    scale = np.array([5], np.float32)
    overridden = instance.execute({"INPUT0": x, "scale": scale}, ["OUTPUT0"], [])
    np.testing.assert_array_equal(overridden["OUTPUT0"], x * 6)


def test_auto_completion_leaves_an_input_with_a_default_out(defaulted_version: Path) -> None:
    config = ModelConfig(name="affine")
    OnnxRuntimeBackend().complete_config(config, defaulted_version, 0)
    assert [t.name for t in config.input] == ["INPUT0"]


def test_an_optional_graph_input_without_a_default_is_refused(defaulted_version: Path) -> None:
    config = parse_pbtxt(
        'name: "affine" input [{name: "INPUT0" data_type: TYPE_FP32 dims: [-1, 4] optional: true}]'
    )
    with pytest.raises(InvalidArgument, match=r"inputs \['INPUT0'\] are optional in the config"):
        OnnxRuntimeBackend().complete_config(config, defaulted_version, 0)
