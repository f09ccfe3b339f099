from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inferd.backends.base import Device, DeviceKind
from inferd.backends.registry import BackendRegistry
from inferd.backends.tensorflow import TensorFlowBackend
from inferd.core.errors import InvalidArgument, Unavailable, Unsupported
from inferd.core.model_config import ModelConfig, config_to_dict, parse_pbtxt
from tests import tensorflow_models

pytest.importorskip("tensorflow")

CPU = Device(DeviceKind.CPU)


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Version folders of each test SavedModel, built once."""
    root = tmp_path_factory.mktemp("tensorflow")
    builders = {
        "mlp": tensorflow_models.mlp_model,
        "two": tensorflow_models.two_signature_model,
        "strings": tensorflow_models.string_model,
        "any_rank": tensorflow_models.any_rank_model,
    }
    for name, build in builders.items():
        build(root / name / "1")
    return {name: root / name / "1" for name in builders}


def _completed(version: Path, text: str = "", default_batch: int = 4) -> ModelConfig:
    config = parse_pbtxt(text)
    TensorFlowBackend().complete_config(config, version, default_batch)
    return config


def _tensors(entries: list[dict[str, object]]) -> list[tuple[object, object, object]]:
    return [(t["name"], t["data_type"], t["dims"]) for t in entries]


def test_matches_a_savedmodel_folder(saved_models: dict[str, Path], tmp_path: Path) -> None:
    backend = TensorFlowBackend()
    assert backend.matches(saved_models["mlp"])
    (tmp_path / "model.savedmodel").mkdir()
    assert not backend.matches(tmp_path)


def test_complete_empty_config_from_signature(saved_models: dict[str, Path]) -> None:
    as_dict = config_to_dict(_completed(saved_models["mlp"]))
    assert as_dict["backend"] == "tensorflow"
    assert as_dict["platform"] == "tensorflow_savedmodel"
    assert as_dict["max_batch_size"] == 4
    assert _tensors(as_dict["input"]) == [("x", "TYPE_FP32", [8])]
    assert _tensors(as_dict["output"]) == [("y", "TYPE_FP32", [4])]


def test_complete_without_default_batch_keeps_batch_axis(saved_models: dict[str, Path]) -> None:
    as_dict = config_to_dict(_completed(saved_models["two"], default_batch=0))
    assert as_dict["max_batch_size"] == 0
    assert _tensors(as_dict["input"]) == [("a", "TYPE_FP32", [-1, 4]), ("b", "TYPE_FP32", [-1, 4])]
    assert [t["name"] for t in as_dict["output"]] == ["scaled", "sum"]


def test_complete_string_tensors(saved_models: dict[str, Path]) -> None:
    as_dict = config_to_dict(_completed(saved_models["strings"]))
    assert _tensors(as_dict["input"]) == [("text", "TYPE_STRING", [])]
    assert _tensors(as_dict["output"]) == [
        ("length", "TYPE_INT32", []),
        ("upper", "TYPE_STRING", []),
    ]


def test_signature_chosen_by_parameter(saved_models: dict[str, Path]) -> None:
    chosen = 'parameters { key: "TF_SIGNATURE_DEF" value { string_value: "difference" } }'
    as_dict = config_to_dict(_completed(saved_models["two"], chosen))
    assert [t["name"] for t in as_dict["output"]] == ["diff"]
    unknown = 'parameters { key: "TF_SIGNATURE_DEF" value { string_value: "nope" } }'
    with pytest.raises(InvalidArgument, match=r"no signature 'nope'.*\['difference', 'serving_"):
        _completed(saved_models["two"], unknown)


def test_config_names_and_types_checked_against_signature(saved_models: dict[str, Path]) -> None:
    wrong_name = 'input [{name: "z" data_type: TYPE_FP32 dims: [8]}]'
    with pytest.raises(InvalidArgument, match=r"\['z'\] not in the SavedModel signature"):
        _completed(saved_models["mlp"], wrong_name)
    wrong_type = (
        'max_batch_size: 4 input [{name: "x" data_type: TYPE_INT32 dims: [8]}]'
        'output [{name: "y" data_type: TYPE_FP32 dims: [4]}]'
    )
    config = _completed(saved_models["mlp"], wrong_type)
    with pytest.raises(InvalidArgument, match=r"'x' is TYPE_INT32, but .* has DT_FLOAT"):
        TensorFlowBackend().load(config, saved_models["mlp"])


def test_unknown_rank_needs_dims_in_config(saved_models: dict[str, Path]) -> None:
    with pytest.raises(InvalidArgument, match=r"rank of \['x', 'doubled'\] open"):
        _completed(saved_models["any_rank"])
    given = (
        'input [{name: "x" data_type: TYPE_FP32 dims: [-1, -1]}]'
        'output [{name: "doubled" data_type: TYPE_FP32 dims: [-1, -1]}]'
    )
    config = _completed(saved_models["any_rank"], given)
    instance = TensorFlowBackend().load(config, saved_models["any_rank"]).create_instance(CPU, "i")
    out = instance.execute({"x": np.ones((2, 3), np.float32)}, ["doubled"], [])
    np.testing.assert_array_equal(out["doubled"], np.full((2, 3), 2, np.float32))


def test_missing_corrupt_or_graphdef_model(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    with pytest.raises(InvalidArgument, match="not found"):
        _completed(tmp_path / "1")
    (tmp_path / "1" / "model.savedmodel").mkdir()
    (tmp_path / "1" / "model.savedmodel" / "saved_model.pb").write_bytes(b"\xff not a proto")
    with pytest.raises(InvalidArgument, match="cannot read"):
        _completed(tmp_path / "1")
    with pytest.raises(Unsupported, match="GraphDef"):
        _completed(tmp_path / "1", 'platform: "tensorflow_graphdef"')


def test_execute_equals_tensorflow_and_returns_only_requested(
    saved_models: dict[str, Path],
) -> None:
    version = saved_models["two"]
    config = _completed(version)
    model = TensorFlowBackend().load(config, version)
    assert model.restored(CPU) is model.restored(CPU)  # instances on one device share it
    instance = model.create_instance(CPU, "two_0")
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((3, 4)).astype(np.float32) for _ in range(2))
    out = instance.execute({"a": a, "b": b}, ["scaled"], [])
    assert list(out) == ["scaled"]
    expected = tensorflow_models.call(version / "model.savedmodel", a=a, b=b)
    np.testing.assert_array_equal(out["scaled"], expected["scaled"])
    instance.close()
    model.close()


def test_execute_strings_as_bytes(saved_models: dict[str, Path]) -> None:
    version = saved_models["strings"]
    instance = (
        TensorFlowBackend().load(_completed(version), version).create_instance(CPU, "strings_0")
    )
    text = np.array([b"abc", b"\xff\x00x", b""], dtype=np.object_)
    out = instance.execute({"text": text}, ["upper", "length"], [])
    assert out["upper"].dtype == np.object_
    assert out["upper"].tolist() == [b"ABC", b"\xff\x00X", b""]
    np.testing.assert_array_equal(out["length"], np.array([3, 3, 0], np.int32))
    empty = instance.execute({"text": np.empty(0, np.object_)}, ["upper"], [])
    assert empty["upper"].shape == (0,)


def test_shape_the_graph_rejects_is_invalid_argument(saved_models: dict[str, Path]) -> None:
    version = saved_models["mlp"]
    loose = (
        'max_batch_size: 4 input [{name: "x" data_type: TYPE_FP32 dims: [-1]}]'
        'output [{name: "y" data_type: TYPE_FP32 dims: [4]}]'
    )
    instance = (
        TensorFlowBackend().load(_completed(version, loose), version).create_instance(CPU, "mlp_0")
    )
    with pytest.raises(InvalidArgument, match="TensorFlow rejected the inputs"):
        instance.execute({"x": np.ones((2, 9), np.float32)}, ["y"], [])
    assert instance.execute({"x": np.ones((2, 8), np.float32)}, ["y"], [])["y"].shape == (2, 4)


def test_gpu_instance_without_gpu_is_unavailable(saved_models: dict[str, Path]) -> None:
    backend = TensorFlowBackend()
    if backend.gpu_available():
        pytest.skip("TensorFlow sees a GPU here")
    version = saved_models["mlp"]
    model = backend.load(_completed(version), version)
    with pytest.raises(Unavailable, match="TensorFlow sees 0 GPU"):
        model.create_instance(Device(DeviceKind.GPU, 0), "mlp_0")


@pytest.mark.gpu
def test_execute_on_gpu(saved_models: dict[str, Path]) -> None:
    backend = TensorFlowBackend()
    if not backend.gpu_available():
        pytest.skip("TensorFlow sees no GPU")
    version = saved_models["mlp"]
    instance = backend.load(_completed(version), version).create_instance(
        Device(DeviceKind.GPU, 0), "mlp_0"
    )
    x = np.random.default_rng(2).standard_normal((5, 8)).astype(np.float32)
    out = instance.execute({"x": x}, ["y"], [])
    expected = tensorflow_models.call(version / "model.savedmodel", x=x)
    np.testing.assert_allclose(out["y"], expected["y"], rtol=1e-4, atol=1e-4)


def test_registry_resolves_savedmodels(saved_models: dict[str, Path]) -> None:
    registry = BackendRegistry()
    assert registry.resolve(ModelConfig(), [saved_models["mlp"]]).name == "tensorflow"
    assert registry.resolve(ModelConfig(platform="tensorflow_savedmodel"), []).name == "tensorflow"


def test_import_is_lazy_and_logging_quiet_by_default() -> None:
    script = (
        "import os, sys\n"
        "import inferd.backends.tensorflow\n"
        "assert 'tensorflow' not in sys.modules\n"
        "from inferd.backends.tensorflow.framework import tensorflow\n"
        "tensorflow()\n"
        "print(os.environ['TF_CPP_MIN_LOG_LEVEL'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "2"
    assert "cpu_feature_guard" not in result.stderr  # an INFO line TF logs at level 0
