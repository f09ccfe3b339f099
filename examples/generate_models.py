"""Build the example ONNX models (tiny, deterministic; nothing is downloaded).

    python examples/generate_models.py [REPOSITORY]   # default: examples/model_repository

Also imported by the tests, which build the same kinds of models in temporary folders.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # readable by every ONNX Runtime release inferd supports

SIMPLE_CONFIG = """\
name: "simple"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  { name: "INPUT0", data_type: TYPE_INT32, dims: [ 16 ] },
  { name: "INPUT1", data_type: TYPE_INT32, dims: [ 16 ] }
]
output [
  { name: "OUTPUT0", data_type: TYPE_INT32, dims: [ 16 ] },
  { name: "OUTPUT1", data_type: TYPE_INT32, dims: [ 16 ] }
]
instance_group [ { count: 1, kind: KIND_CPU } ]
"""


def _save(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def simple_model(path: Path, datatype: int = TensorProto.INT32, width: int | str = 16) -> None:
    """OUTPUT0 = INPUT0 + INPUT1 and OUTPUT1 = INPUT0 - INPUT1, shapes [batch, width]."""
    shape = ["batch", width]
    inputs = [helper.make_tensor_value_info(n, datatype, shape) for n in ("INPUT0", "INPUT1")]
    outputs = [helper.make_tensor_value_info(n, datatype, shape) for n in ("OUTPUT0", "OUTPUT1")]
    nodes = [
        helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
        helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
    ]
    _save(helper.make_graph(nodes, "simple", inputs, outputs), path)


def mlp_model(path: Path, sizes: tuple[int, ...] = (256, 1024, 1024, 256), seed: int = 0) -> None:
    """A ReLU MLP on FP32 `input` [batch, sizes[0]] -> `output` [batch, sizes[-1]]."""
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    current = "input"
    layers = len(sizes) - 1
    for index, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        weight = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        bias = (rng.standard_normal(fan_out) * 0.01).astype(np.float32)
        initializers += [
            numpy_helper.from_array(weight, f"w{index}"),
            numpy_helper.from_array(bias, f"b{index}"),
        ]
        gemm_out = "output" if index == layers - 1 else f"h{index}"
        nodes.append(helper.make_node("Gemm", [current, f"w{index}", f"b{index}"], [gemm_out]))
        if index < layers - 1:
            nodes.append(helper.make_node("Relu", [gemm_out], [f"r{index}"]))
            current = f"r{index}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", sizes[-1]])],
        initializers,
    )
    _save(graph, path)


def identity_model(path: Path, datatype: int, dims: list[int | str] | None = None) -> None:
    """OUTPUT0 = INPUT0 for any ONNX tensor type, shape [batch, 4] unless `dims` says otherwise."""
    shape = dims if dims is not None else ["batch", 4]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        "identity",
        [helper.make_tensor_value_info("INPUT0", datatype, shape)],
        [helper.make_tensor_value_info("OUTPUT0", datatype, shape)],
    )
    _save(graph, path)


def write_example_repository(repository: Path) -> None:
    simple_model(repository / "simple" / "1" / "model.onnx")
    (repository / "simple" / "config.pbtxt").write_text(SIMPLE_CONFIG)
    mlp_model(repository / "mlp" / "1" / "model.onnx")  # no config: auto-completed at load


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "model_repository"
    write_example_repository(target)
    print(f"wrote example models under {target}")
