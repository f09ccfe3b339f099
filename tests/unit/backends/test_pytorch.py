"""The PyTorch backend on real models generated here: TorchScript, torch.export and model.py
(builders in tests/pytorch_models.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import torch
from tritonclient.grpc import model_config_pb2

from inferd.backends.base import Device, DeviceKind
from inferd.backends.pytorch import PyTorchBackend
from inferd.backends.registry import BackendRegistry
from inferd.core.errors import InvalidArgument, ModelExecutionError, Unavailable
from inferd.core.model_config import ModelConfig, config_to_dict, parse_pbtxt
from tests.pytorch_models import (
    NAMED_CONFIG,
    run,
    save_torchscript,
    write_eager,
    write_exported,
    write_mlp_torchscript,
    write_named_torchscript,
    write_sequence_accumulators,
)

CPU = Device(DeviceKind.CPU)


def _config(model_dir: Path) -> Any:
    config = parse_pbtxt((model_dir / "config.pbtxt").read_text())
    config.name = model_dir.name
    return config


def _completed(model_dir: Path, config: Any | None = None) -> Any:
    config = _config(model_dir) if config is None else config
    PyTorchBackend().complete_config(config, model_dir / "1", default_max_batch_size=4)
    return config


def _instance(model_dir: Path, config: Any | None = None, device: Device = CPU) -> Any:
    config = _completed(model_dir, config)
    return PyTorchBackend().load(config, model_dir / "1").create_instance(device, "m_0")


def _tensors(config: Any) -> list[tuple[str, str, list[int]]]:
    as_dict = config_to_dict(config)
    return [
        (t["name"], t["data_type"], t["dims"])
        for kind in ("input", "output")
        for t in as_dict[kind]
    ]


def test_matches_pt_and_pt2_but_leaves_model_py_to_the_python_backend(tmp_path: Path) -> None:
    backend = PyTorchBackend()
    write_mlp_torchscript(tmp_path / "ts")
    write_exported(tmp_path / "ep")
    write_eager(tmp_path / "eager")
    assert backend.matches(tmp_path / "ts" / "1")
    assert backend.matches(tmp_path / "ep" / "1")
    assert not backend.matches(tmp_path / "eager" / "1")
    registry = BackendRegistry()
    assert registry.resolve(ModelConfig(platform="pytorch_torchscript"), []).name == "pytorch"
    assert registry.resolve(ModelConfig(), [tmp_path / "ep" / "1"]).name == "pytorch"


def test_exported_program_is_auto_completed(tmp_path: Path) -> None:
    write_exported(tmp_path / "ep")
    config = _completed(tmp_path / "ep", ModelConfig(name="ep"))
    assert config.backend == "pytorch"
    assert config.max_batch_size == 4  # every first axis is dynamic
    assert _tensors(config) == [
        ("x", "TYPE_FP32", [8]),
        ("OUTPUT__0", "TYPE_FP32", [4]),
        ("OUTPUT__1", "TYPE_FP64", [4]),
    ]


def test_static_exported_program_keeps_its_batch_axis(tmp_path: Path) -> None:
    write_exported(tmp_path / "ep", dynamic_batch=False)
    config = _completed(tmp_path / "ep", ModelConfig(name="ep"))
    assert config.max_batch_size == 0
    assert _tensors(config)[0] == ("x", "TYPE_FP32", [2, 8])


def test_exported_config_names_are_checked(tmp_path: Path) -> None:
    write_exported(tmp_path / "ep")
    config = parse_pbtxt('input [{ name: "y" data_type: TYPE_FP32 dims: [ 8 ] }]')
    with pytest.raises(InvalidArgument, match=r"\['y'\] not in the exported program"):
        _completed(tmp_path / "ep", config)


def test_torchscript_without_tensors_says_what_the_config_must_give(tmp_path: Path) -> None:
    write_named_torchscript(tmp_path / "named")
    with pytest.raises(InvalidArgument, match=r"named \['a', 'b'\].*data_type and dims"):
        _completed(tmp_path / "named", ModelConfig(name="named"))


def test_torchscript_config_is_completed_and_names_checked(tmp_path: Path) -> None:
    write_mlp_torchscript(tmp_path / "mlp")
    config = _config(tmp_path / "mlp")
    config.ClearField("platform")
    _completed(tmp_path / "mlp", config)
    assert (config.backend, config.platform) == ("pytorch", "pytorch_libtorch")
    # Names that fit no convention are passed in config order (Triton's fallback), when the
    # counts agree.
    ordered = _config(tmp_path / "mlp")
    ordered.input[0].name = "features"
    _completed(tmp_path / "mlp", ordered)
    bad = _config(tmp_path / "mlp")
    bad.input.add().CopyFrom(bad.input[0])
    bad.input[0].name, bad.input[1].name = "features", "more"
    with pytest.raises(InvalidArgument, match=r"forward's arguments \['input'\].*takes 1"):
        _completed(tmp_path / "mlp", bad)
    gap = parse_pbtxt(NAMED_CONFIG.replace('"a"', '"IN__0"').replace('"b"', '"IN__2"'))
    write_named_torchscript(tmp_path / "named")
    with pytest.raises(InvalidArgument, match="numbered __0 to __1"):
        _completed(tmp_path / "named", gap)


def test_torchscript_by_index_convention(tmp_path: Path) -> None:
    module = write_mlp_torchscript(tmp_path / "mlp")
    x = np.random.default_rng(0).standard_normal((3, 8), dtype=np.float32)
    out = _instance(tmp_path / "mlp").execute({"INPUT__0": x}, ["OUTPUT__0"], [])
    assert out["OUTPUT__0"].dtype == np.float32
    np.testing.assert_allclose(out["OUTPUT__0"], run(module, x).numpy(), rtol=1e-6)


def test_torchscript_named_inputs_and_dict_outputs(tmp_path: Path) -> None:
    module = write_named_torchscript(tmp_path / "named")
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.ones((2, 4), dtype=np.float32)
    out = _instance(tmp_path / "named").execute({"b": b, "a": a}, ["scaled", "sum"], [])
    expected = run(module, a, b)
    np.testing.assert_allclose(out["sum"], a + b)
    np.testing.assert_allclose(out["scaled"], expected["scaled"].numpy())


def test_indexed_inputs_go_by_their_index_not_their_config_order(tmp_path: Path) -> None:
    module = write_named_torchscript(tmp_path / "named")
    config = parse_pbtxt(NAMED_CONFIG.replace('"a"', '"INPUT__1"').replace('"b"', '"INPUT__0"'))
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.ones((2, 4), dtype=np.float32)
    out = _instance(tmp_path / "named", config).execute(
        {"INPUT__0": a, "INPUT__1": b}, ["scaled"], []
    )
    np.testing.assert_allclose(out["scaled"], run(module, a, b)["scaled"].numpy())


def test_exported_program_executes_with_tuple_outputs(tmp_path: Path) -> None:
    module = write_exported(tmp_path / "ep")
    x = np.random.default_rng(1).standard_normal((5, 8), dtype=np.float32)
    out = _instance(tmp_path / "ep", ModelConfig(name="ep")).execute(
        {"x": x}, ["OUTPUT__0", "OUTPUT__1"], []
    )
    logits, probabilities = run(module, x)
    np.testing.assert_allclose(out["OUTPUT__0"], logits.numpy(), rtol=1e-6)
    assert out["OUTPUT__1"].dtype == np.float64
    np.testing.assert_allclose(out["OUTPUT__1"], probabilities.numpy(), rtol=1e-6)


def test_model_py_builds_the_module_and_loads_its_weights(tmp_path: Path) -> None:
    module = write_eager(tmp_path / "eager")
    x = np.random.default_rng(2).standard_normal((2, 8), dtype=np.float32)
    out = _instance(tmp_path / "eager").execute({"features": x}, ["OUTPUT__0"], [])
    np.testing.assert_allclose(out["OUTPUT__0"], run(module, x).numpy(), rtol=1e-6)


def test_model_py_without_build_model(tmp_path: Path) -> None:
    write_eager(tmp_path / "eager")
    (tmp_path / "eager" / "1" / "model.py").write_text("MODEL = None\n")
    with pytest.raises(InvalidArgument, match=r"defines no build_model\(\)"):
        _completed(tmp_path / "eager")


def test_instances_on_one_device_share_one_module(tmp_path: Path) -> None:
    write_mlp_torchscript(tmp_path / "mlp")
    config = _completed(tmp_path / "mlp")
    model = PyTorchBackend().load(config, tmp_path / "mlp" / "1")
    first, second = model.create_instance(CPU, "a"), model.create_instance(CPU, "b")
    assert first._module is second._module
    x = np.ones((1, 8), dtype=np.float32)
    np.testing.assert_array_equal(
        first.execute({"INPUT__0": x}, ["OUTPUT__0"], [])["OUTPUT__0"],
        second.execute({"INPUT__0": x}, ["OUTPUT__0"], [])["OUTPUT__0"],
    )


def test_read_only_request_buffers_are_used_without_a_copy_or_warning(tmp_path: Path) -> None:
    write_mlp_torchscript(tmp_path / "mlp")
    instance = _instance(tmp_path / "mlp")
    x = np.frombuffer(np.ones(8, dtype=np.float32).tobytes(), dtype=np.float32).reshape(1, 8)
    assert not x.flags.writeable
    out = instance.execute({"INPUT__0": x}, ["OUTPUT__0"], [])  # warnings are errors here
    assert out["OUTPUT__0"].shape == (1, 4)


def test_bf16_tensors_cross_as_the_same_bits(tmp_path: Path) -> None:
    model_dir = tmp_path / "bf16"
    save_torchscript(model_dir, torch.nn.Tanh())
    config = parse_pbtxt(
        'input [{ name: "INPUT__0" data_type: TYPE_BF16 dims: [ 3 ] }]'
        'output [{ name: "OUTPUT__0" data_type: TYPE_BF16 dims: [ 3 ] }]'
    )
    x = np.array([-1.0, 0.5, 2.0], dtype=ml_dtypes.bfloat16)
    out = _instance(model_dir, config).execute({"INPUT__0": x}, ["OUTPUT__0"], [])["OUTPUT__0"]
    assert out.dtype == x.dtype
    expected = torch.tanh(torch.tensor([-1.0, 0.5, 2.0], dtype=torch.bfloat16))
    np.testing.assert_array_equal(out.astype(np.float32), expected.float().numpy())


def _column(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int32).reshape(-1, 1)


def test_sequence_controls_and_states_reach_forward_and_come_back(tmp_path: Path) -> None:
    write_sequence_accumulators(tmp_path)
    indexed = _instance(tmp_path / "seq_ts_indexed").execute(
        {"INPUT__0": _column(1, 2), "INPUT_STATE__1": _column(10, 20)},
        ["OUTPUT__0", "OUTPUT_STATE__1"],
        [],
    )
    assert {name: a.ravel().tolist() for name, a in indexed.items()} == {
        "OUTPUT__0": [11, 22],
        "OUTPUT_STATE__1": [11, 22],
    }
    named = _instance(tmp_path / "seq_ts_named").execute(
        {"INPUT": _column(1, 2), "INPUT_STATE": _column(10, 20), "START": _column(1, 0)},
        ["OUTPUT_STATE"],
        [],
    )
    assert named["OUTPUT_STATE"].ravel().tolist() == [1, 22]  # START drops the old sum


def test_exported_sequence_model_keeps_state_out_of_its_config(tmp_path: Path) -> None:
    write_sequence_accumulators(tmp_path)
    config = _completed(tmp_path / "seq_exported")
    # The program's argument names as written (the graph itself lower-cases them).
    assert _tensors(config) == [("INPUT", "TYPE_INT32", [1]), ("OUTPUT", "TYPE_INT32", [1])]
    out = _instance(tmp_path / "seq_exported", config).execute(
        {"INPUT": _column(3), "INPUT_STATE": _column(4)}, ["OUTPUT", "OUTPUT_STATE"], []
    )
    assert (out["OUTPUT"].item(), out["OUTPUT_STATE"].item()) == (7, 7)


def test_sequence_tensors_must_fit_forward(tmp_path: Path) -> None:
    write_sequence_accumulators(tmp_path)
    config = _config(tmp_path / "seq_ts_named")
    config.sequence_batching.state[0].input_name = "STATE"
    with pytest.raises(InvalidArgument, match=r"\['INPUT', 'START', 'STATE'\] must be named"):
        _completed(tmp_path / "seq_ts_named", config)
    config = _config(tmp_path / "seq_ts_indexed")
    config.sequence_batching.state[0].input_name = "INPUT_STATE__2"
    with pytest.raises(InvalidArgument, match="numbered __0 to __1"):
        _completed(tmp_path / "seq_ts_indexed", config)


def test_wrong_outputs_of_forward_fail_the_batch_clearly(tmp_path: Path) -> None:
    write_mlp_torchscript(tmp_path / "mlp")
    config = _config(tmp_path / "mlp")
    config.output[0].name = "OUTPUT__1"
    instance = _instance(tmp_path / "mlp", config)
    with pytest.raises(ModelExecutionError, match="element 1 of forward's result, which has 1"):
        instance.execute({"INPUT__0": np.ones((1, 8), np.float32)}, ["OUTPUT__1"], [])


def test_string_tensors_are_refused_at_load(tmp_path: Path) -> None:
    write_mlp_torchscript(tmp_path / "mlp")
    config = _completed(tmp_path / "mlp")
    config.input[0].data_type = model_config_pb2.TYPE_STRING
    with pytest.raises(InvalidArgument, match="no string tensors"):
        PyTorchBackend().load(config, tmp_path / "mlp" / "1")


def _with_parameter(config: Any, key: str, value: str) -> Any:
    config.parameters[key].string_value = value
    return config


def test_parameters_are_checked(tmp_path: Path) -> None:
    write_mlp_torchscript(tmp_path / "mlp")
    for key, value, message in [
        ("torch_compile", "yes", "'true' or 'false'"),
        ("intra_op_thread_count", "0", "positive integer"),
        ("torch_compile", "true", "cannot compile TorchScript"),
    ]:
        config = _with_parameter(_completed(tmp_path / "mlp"), key, value)
        with pytest.raises(InvalidArgument, match=message):
            PyTorchBackend().load(config, tmp_path / "mlp" / "1")


def test_intra_op_thread_count_sets_torch_threads(tmp_path: Path) -> None:
    write_mlp_torchscript(tmp_path / "mlp")
    before = torch.get_num_threads()
    config = _with_parameter(_completed(tmp_path / "mlp"), "intra_op_thread_count", "1")
    try:
        PyTorchBackend().load(config, tmp_path / "mlp" / "1")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_no_grad_mode_gives_the_same_results(tmp_path: Path) -> None:
    module = write_mlp_torchscript(tmp_path / "mlp")
    config = _with_parameter(_config(tmp_path / "mlp"), "inference_mode", "false")
    x = np.full((2, 8), 0.25, dtype=np.float32)
    out = _instance(tmp_path / "mlp", config).execute({"INPUT__0": x}, ["OUTPUT__0"], [])
    np.testing.assert_allclose(out["OUTPUT__0"], run(module, x).numpy(), rtol=1e-6)


# Inductor's CPU path scripts a helper internally with torch 2.13.
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_torch_compile_of_model_py(tmp_path: Path) -> None:
    module = write_eager(tmp_path / "eager")
    config = _with_parameter(_config(tmp_path / "eager"), "torch_compile", "true")
    instance = _instance(tmp_path / "eager", config)
    assert isinstance(instance._module._orig_mod, torch.nn.Module)  # what torch.compile wraps
    x = np.random.default_rng(3).standard_normal((2, 8), dtype=np.float32)
    out = instance.execute({"features": x}, ["OUTPUT__0"], [])
    np.testing.assert_allclose(out["OUTPUT__0"], run(module, x).numpy(), rtol=1e-5)


def test_gpu_instance_without_cuda_is_unavailable(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    write_mlp_torchscript(tmp_path / "mlp")
    assert not PyTorchBackend().gpu_available()
    with pytest.raises(Unavailable, match="no CUDA device"):
        _instance(tmp_path / "mlp", device=Device(DeviceKind.GPU, 0))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_instances_match_cpu(tmp_path: Path) -> None:
    gpu = Device(DeviceKind.GPU, 0)
    x = np.random.default_rng(4).standard_normal((4, 8), dtype=np.float32)
    ts = write_mlp_torchscript(tmp_path / "mlp")
    out = _instance(tmp_path / "mlp", device=gpu).execute({"INPUT__0": x}, ["OUTPUT__0"], [])
    np.testing.assert_allclose(out["OUTPUT__0"], run(ts, x).numpy(), rtol=1e-4, atol=1e-5)
    ep = write_exported(tmp_path / "ep")
    out = _instance(tmp_path / "ep", ModelConfig(name="ep"), gpu).execute(
        {"x": x}, ["OUTPUT__0"], []
    )
    np.testing.assert_allclose(out["OUTPUT__0"], run(ep, x)[0].numpy(), rtol=1e-4, atol=1e-5)
    eager = write_eager(tmp_path / "eager")
    out = _instance(tmp_path / "eager", device=gpu).execute({"features": x}, ["OUTPUT__0"], [])
    np.testing.assert_allclose(out["OUTPUT__0"], run(eager, x).numpy(), rtol=1e-4, atol=1e-5)
