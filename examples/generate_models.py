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


def affine_model(
    path: Path, scale: float, bias: float, width: int = 4, overridable: bool = False
) -> None:
    """OUTPUT0 = INPUT0 * scale + bias, FP32 [batch, width]. `overridable` lists the scale (FP32
    [1]) as a graph input too: an input with a default value, which a request may override."""
    shape = ["batch", width]
    scale_value = np.array([scale] if overridable else scale, np.float32)
    constants = [
        numpy_helper.from_array(scale_value, "scale"),
        numpy_helper.from_array(np.array(bias, np.float32), "bias"),
    ]
    inputs = [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, shape)]
    if overridable:
        inputs.append(helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1]))
    nodes = [
        helper.make_node("Mul", ["INPUT0", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "bias"], ["OUTPUT0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "affine",
        inputs,
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, shape)],
        constants,
    )
    _save(graph, path)


# The ONNX-only pipeline: IN -> pre (affine) -> X -> {mlp_a, mlp_b} in parallel -> post (sum and
# difference). The example's `pipeline` ensemble has the same shape with Python end steps.
PIPELINE_WIDTH = 4
_ONNX_STEP = """name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ {{ name: "{input}", data_type: TYPE_FP32, dims: [ 4 ] }} ]
output [ {{ name: "{output}", data_type: TYPE_FP32, dims: [ 4 ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: {delay} }}
"""
ONNX_PIPELINE_CONFIG = """name: "onnx_pipeline"
platform: "ensemble"
max_batch_size: 8
input [ { name: "IN", data_type: TYPE_FP32, dims: [ 4 ] } ]
output [
  { name: "SUM", data_type: TYPE_FP32, dims: [ 4 ] },
  { name: "DIFF", data_type: TYPE_FP32, dims: [ 4 ] }
]
ensemble_scheduling { step [
  { model_name: "pre", model_version: -1,
    input_map { key: "INPUT0", value: "IN" }, output_map { key: "OUTPUT0", value: "X" } },
  { model_name: "mlp_a", model_version: -1,
    input_map { key: "input", value: "X" }, output_map { key: "output", value: "A" } },
  { model_name: "mlp_b", model_version: -1,
    input_map { key: "input", value: "X" }, output_map { key: "output", value: "B" } },
  { model_name: "post", model_version: -1,
    input_map [ { key: "INPUT0", value: "A" }, { key: "INPUT1", value: "B" } ],
    output_map [ { key: "OUTPUT0", value: "SUM" }, { key: "OUTPUT1", value: "DIFF" } ] }
] }
"""


def write_onnx_pipeline(repository: Path, queue_delay_us: int = 0) -> None:
    """The `onnx_pipeline` ensemble and its four ONNX models (all batching up to 8)."""
    width = PIPELINE_WIDTH
    affine_model(repository / "pre" / "1" / "model.onnx", 2.0, 1.0, width)
    mlp_model(repository / "mlp_a" / "1" / "model.onnx", (width, 8, width), seed=1)
    mlp_model(repository / "mlp_b" / "1" / "model.onnx", (width, 8, width), seed=2)
    simple_model(repository / "post" / "1" / "model.onnx", TensorProto.FLOAT, width)
    for name, input_name, output_name in (
        ("pre", "INPUT0", "OUTPUT0"),
        ("mlp_a", "input", "output"),
        ("mlp_b", "input", "output"),
    ):
        config = _ONNX_STEP.format(
            name=name, input=input_name, output=output_name, delay=queue_delay_us
        )
        (repository / name / "config.pbtxt").write_text(config)
    post = SIMPLE_CONFIG.replace('"simple"', '"post"').replace("TYPE_INT32", "TYPE_FP32")
    post = post.replace("[ 16 ]", f"[ {width} ]")
    (repository / "post" / "config.pbtxt").write_text(post)
    (repository / "onnx_pipeline" / "1").mkdir(parents=True, exist_ok=True)
    (repository / "onnx_pipeline" / "config.pbtxt").write_text(ONNX_PIPELINE_CONFIG)


def accumulate_state_model(path: Path) -> None:
    """OUTPUT = OUTPUT_STATE = INPUT_STATE + INPUT, INT32 [batch, 1]: an accumulator whose
    running sum the sequence batcher keeps as implicit state."""
    shape: list[int | str] = ["batch", 1]
    tensors = ("INPUT", "INPUT_STATE", "OUTPUT", "OUTPUT_STATE")
    info = {n: helper.make_tensor_value_info(n, TensorProto.INT32, shape) for n in tensors}
    nodes = [
        helper.make_node("Add", ["INPUT_STATE", "INPUT"], ["OUTPUT"]),
        helper.make_node("Identity", ["OUTPUT"], ["OUTPUT_STATE"]),
    ]
    graph = helper.make_graph(
        nodes,
        "accumulate_state",
        [info["INPUT"], info["INPUT_STATE"]],
        [info["OUTPUT"], info["OUTPUT_STATE"]],
    )
    _save(graph, path)


# The tiny_lm example learns from the opening of Lewis Carroll's "Alice's Adventures in
# Wonderland" (1865, in the public domain).
TINY_LM_TEXT = """\
Alice was beginning to get very tired of sitting by her sister on the bank, and of having
nothing to do: once or twice she had peeped into the book her sister was reading, but it had
no pictures or conversations in it, 'and what is the use of a book,' thought Alice 'without
pictures or conversations?' So she was considering in her own mind (as well as she could, for
the hot day made her feel very sleepy and stupid), whether the pleasure of making a
daisy-chain would be worth the trouble of getting up and picking the daisies, when suddenly a
White Rabbit with pink eyes ran close by her. There was nothing so very remarkable in that; nor
did Alice think it so very much out of the way to hear the Rabbit say to itself, 'Oh dear! Oh
dear! I shall be late!' But when the Rabbit actually took a watch out of its waistcoat-pocket,
and looked at it, and then hurried on, Alice started to her feet, for it flashed across her
mind that she had never before seen a rabbit with either a waistcoat-pocket, or a watch to take
out of it, and burning with curiosity, she ran across the field after it, and fortunately was
just in time to see it pop down a large rabbit-hole under the hedge.
"""
TINY_LM_VOCABULARY = " abcdefghijklmnopqrstuvwxyz.,;:'!?-()"


def tiny_lm_weights(path: Path, text: str = TINY_LM_TEXT) -> None:
    """Character trigram counts of `text` (lower-cased; a character outside the vocabulary is
    a space): `trigrams[a, b, c]` counts "abc". Saved compressed, with the vocabulary."""
    vocabulary = TINY_LM_VOCABULARY
    index = {char: i for i, char in enumerate(vocabulary)}
    tokens = [index.get(char, 0) for char in " ".join(text.lower().split())]
    size = len(vocabulary)
    trigrams = np.zeros((size, size, size), np.uint16)
    for a, b, c in zip(tokens, tokens[1:], tokens[2:], strict=False):
        trigrams[a, b, c] += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, vocabulary=np.array(vocabulary), trigrams=trigrams)


def write_example_repository(repository: Path) -> None:
    simple_model(repository / "simple" / "1" / "model.onnx")
    (repository / "simple" / "config.pbtxt").write_text(SIMPLE_CONFIG)
    mlp_model(repository / "mlp" / "1" / "model.onnx")  # no config: auto-completed at load
    # Its config.pbtxt is checked in next to it, as is the Python `sequence_accumulate`.
    accumulate_state_model(repository / "sequence_accumulate_state" / "1" / "model.onnx")
    # The two parallel ONNX branches of the `pipeline` ensemble (its Python steps are files).
    mlp_model(repository / "pipeline_branch_a" / "1" / "model.onnx", (8, 16, 4), seed=1)
    mlp_model(repository / "pipeline_branch_b" / "1" / "model.onnx", (8, 16, 4), seed=2)
    # The weights of the text generation example (its model.py and config are checked in).
    tiny_lm_weights(repository / "tiny_lm" / "1" / "weights.npz")


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "model_repository"
    write_example_repository(target)
    print(f"wrote example models under {target}")
