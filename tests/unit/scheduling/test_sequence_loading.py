"""Loading a sequence model: auto-complete (ONNX, TensorFlow) leaves control and state tensors
to the server and checks them against the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import generate_models
from inferd.backends.onnxruntime import OnnxRuntimeBackend
from inferd.core.errors import InvalidArgument
from inferd.core.model_config import parse_pbtxt
from inferd.engine.loader import LoadOptions, complete_config

STATE = (
    'state [ { input_name: "INPUT_STATE", output_name: "OUTPUT_STATE", '
    "data_type: {state_type}, dims: [ 1 ] } ]"
)
CONTROL = (
    'control_input [ { name: "START", '
    "control [ { kind: CONTROL_SEQUENCE_START, int32_false_true: [ 0, 1 ] } ] } ]"
)


def completed(tmp_path: Path, sequence: str) -> Any:
    generate_models.accumulate_state_model(tmp_path / "1" / "model.onnx")
    config = parse_pbtxt(f'name: "acc"\nsequence_batching {{ {sequence} }}')
    return complete_config(config, tmp_path / "1", OnnxRuntimeBackend(), LoadOptions())


def test_state_tensors_are_not_config_inputs_or_outputs(tmp_path: Path) -> None:
    result = completed(tmp_path, STATE.replace("{state_type}", "TYPE_INT32"))
    assert [t.name for t in result.input] == ["INPUT"]
    assert [t.name for t in result.output] == ["OUTPUT"]
    assert result.max_batch_size == 4 and not result.HasField("dynamic_batching")


def test_state_type_must_match_the_model(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="INPUT_STATE' is TYPE_FP32"):
        completed(tmp_path, STATE.replace("{state_type}", "TYPE_FP32"))


def test_control_input_must_exist_in_the_model(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="names input 'START', which the ONNX model lacks"):
        completed(tmp_path, STATE.replace("{state_type}", "TYPE_INT32") + " " + CONTROL)


def test_tensorflow_auto_complete_leaves_sequence_tensors_to_the_server(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from inferd.backends.tensorflow import TensorFlowBackend
    from tests import tensorflow_models

    tensorflow_models.accumulate_state_model(tmp_path / "1")
    state = STATE.replace("{state_type}", "TYPE_INT32")
    config = parse_pbtxt(f'name: "acc"\nsequence_batching {{ {state} }}')
    result = complete_config(config, tmp_path / "1", TensorFlowBackend(), LoadOptions())
    assert [t.name for t in result.input] == ["INPUT"]
    assert [t.name for t in result.output] == ["OUTPUT"]
    config = parse_pbtxt(f'name: "acc"\nsequence_batching {{ {state} {CONTROL} }}')
    with pytest.raises(InvalidArgument, match="'START', which the SavedModel signature"):
        complete_config(config, tmp_path / "1", TensorFlowBackend(), LoadOptions())
