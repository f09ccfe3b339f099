"""Tiny real PyTorch models for the PyTorch backend's tests: TorchScript, torch.export and
model.py with weights. Each `write_*` builder fills a model folder and returns the module the
served results must equal (see `run`)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

MLP_CONFIG = """
platform: "pytorch_libtorch"
max_batch_size: 8
input [{ name: "INPUT__0" data_type: TYPE_FP32 dims: [ 8 ] }]
output [{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 4 ] }]
"""
NAMED_CONFIG = """
backend: "pytorch"
max_batch_size: 8
input [
  { name: "a" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "b" data_type: TYPE_FP32 dims: [ 4 ] }
]
output [
  { name: "sum" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "scaled" data_type: TYPE_FP32 dims: [ 4 ] }
]
"""
EAGER_CONFIG = """
backend: "pytorch"
max_batch_size: 8
input [{ name: "features" data_type: TYPE_FP32 dims: [ 8 ] }]
output [{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 3 ] }]
"""
EAGER_SOURCE = """
import torch


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 3)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(features))


def build_model() -> torch.nn.Module:
    return Net()
"""

# Sequence accumulators with implicit state: the server keeps each sequence's running sum and
# feeds it back, so OUTPUT = OUTPUT_STATE = INPUT_STATE + INPUT. `{names}` are the tensor names.
_STATE = """
  state [{{
    input_name: "{state_in}" output_name: "{state_out}" data_type: TYPE_INT32 dims: [ 1 ]
    initial_state {{ name: "zeros" data_type: TYPE_INT32 dims: [ 1 ] zero_data: true }}
  }}]
"""
SEQUENCE_INDEXED_CONFIG = (
    """
platform: "pytorch_libtorch"
max_batch_size: 4
input [{ name: "INPUT__0" data_type: TYPE_INT32 dims: [ 1 ] }]
output [{ name: "OUTPUT__0" data_type: TYPE_INT32 dims: [ 1 ] }]
instance_group [{ count: 2, kind: KIND_CPU }]
sequence_batching {"""
    + _STATE.format(state_in="INPUT_STATE__1", state_out="OUTPUT_STATE__1")
    + "}\n"
)
# Named tensors, and a START control input that resets the sum (so the model must receive it).
SEQUENCE_NAMED_CONFIG = (
    """
backend: "pytorch"
max_batch_size: 4
input [{ name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] }]
output [{ name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] }]
sequence_batching {
  control_input [{
    name: "START" control [{ kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] }]
  }]"""
    + _STATE.format(state_in="INPUT_STATE", state_out="OUTPUT_STATE")
    + "}\n"
)
# The exported accumulator's inputs and outputs are auto-completed from the program.
SEQUENCE_EXPORTED_CONFIG = (
    "max_batch_size: 4\nsequence_batching {"
    + _STATE.format(state_in="INPUT_STATE", state_out="OUTPUT_STATE")
    + "}\n"
)


class IndexedAccumulator(torch.nn.Module):
    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total = state + x
        return total, total


class NamedAccumulator(torch.nn.Module):
    def forward(
        self, INPUT: torch.Tensor, INPUT_STATE: torch.Tensor, START: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        total = INPUT_STATE * (1 - START) + INPUT
        return {"OUTPUT": total, "OUTPUT_STATE": total}


class ExportedAccumulator(torch.nn.Module):
    def forward(self, INPUT: torch.Tensor, INPUT_STATE: torch.Tensor) -> dict[str, torch.Tensor]:
        total = INPUT_STATE + INPUT
        return {"OUTPUT": total, "OUTPUT_STATE": total}


class Named(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.linspace(0.5, 2.0, 4))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"sum": a + b, "scaled": (a - b) * self.scale}


class TwoHeads(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.linear(x)
        return logits, torch.softmax(logits, dim=-1).double()


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


def script(module: torch.nn.Module) -> Any:
    """torch.jit.script without its deprecation warning (TorchScript is what is tested here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(module)


def save_torchscript(model_dir: Path, module: torch.nn.Module, config: str | None = None) -> Any:
    """`module` scripted into version 1's model.pt, with `config` as config.pbtxt when given;
    returns the scripted module."""
    scripted = script(module.eval())
    (model_dir / "1").mkdir(parents=True)
    scripted.save(str(model_dir / "1" / "model.pt"))
    if config is not None:
        (model_dir / "config.pbtxt").write_text(config)
    return scripted


def write_mlp_torchscript(model_dir: Path) -> Any:
    """A scripted MLP 8 -> 4 in Triton's INPUT__0/OUTPUT__0 convention; returns the module."""
    return save_torchscript(model_dir, _mlp(), MLP_CONFIG)


def write_named_torchscript(model_dir: Path) -> Any:
    """forward(a, b) returning a dict {sum, scaled}, served with inputs named a and b."""
    return save_torchscript(model_dir, Named(), NAMED_CONFIG)


def write_exported(model_dir: Path, dynamic_batch: bool = True) -> torch.nn.Module:
    """A torch.export archive of forward(x) -> (logits, probabilities as FP64); no config."""
    torch.manual_seed(1)
    module = TwoHeads().eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    dynamic = {"x": {0: batch}} if dynamic_batch else None
    program = torch.export.export(module, (torch.ones(2, 8),), dynamic_shapes=dynamic)
    (model_dir / "1").mkdir(parents=True)
    torch.export.save(program, str(model_dir / "1" / "model.pt2"))
    return module


def write_sequence_accumulators(root: Path) -> list[str]:
    """Three accumulators with implicit state under `root` (TorchScript in Triton's __<index>
    convention, TorchScript with named tensors and a START control, a torch.export archive);
    returns their model names."""
    save_torchscript(root / "seq_ts_indexed", IndexedAccumulator(), SEQUENCE_INDEXED_CONFIG)
    save_torchscript(root / "seq_ts_named", NamedAccumulator(), SEQUENCE_NAMED_CONFIG)
    # Two distinct example tensors: export would treat one tensor passed twice as an alias.
    example = (torch.ones(2, 1, dtype=torch.int32), torch.zeros(2, 1, dtype=torch.int32))
    batch = torch.export.Dim("batch", min=1, max=4)
    program = torch.export.export(
        ExportedAccumulator().eval(),
        example,
        dynamic_shapes={"INPUT": {0: batch}, "INPUT_STATE": {0: batch}},
    )
    exported = root / "seq_exported"
    (exported / "1").mkdir(parents=True)
    torch.export.save(program, str(exported / "1" / "model.pt2"))
    (exported / "config.pbtxt").write_text(SEQUENCE_EXPORTED_CONFIG)
    return ["seq_ts_indexed", "seq_ts_named", "seq_exported"]


def write_eager(model_dir: Path) -> torch.nn.Module:
    """model.py's build_model() plus its weights in model.pth; returns the reference module."""
    namespace: dict[str, Any] = {}
    exec(EAGER_SOURCE, namespace)
    torch.manual_seed(2)
    module: torch.nn.Module = namespace["build_model"]().eval()
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "model.py").write_text(EAGER_SOURCE)
    torch.save(module.state_dict(), model_dir / "1" / "model.pth")
    (model_dir / "config.pbtxt").write_text(EAGER_CONFIG)
    return module


def run(module: Any, *inputs: np.ndarray) -> Any:
    """The module run directly: the reference the served results must equal."""
    with torch.inference_mode():
        return module(*(torch.from_numpy(array) for array in inputs))
