from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inferd.core.errors import InvalidArgument, Unsupported
from inferd.core.model_config import parse_pbtxt
from inferd.core.types import RequestedOutput
from inferd.engine.classification import (
    check_classification,
    class_count,
    classify_outputs,
    read_labels,
    top_k,
    with_labels,
)
from inferd.engine.request_checks import ModelTensor

CONFIG = parse_pbtxt(
    """
    output [
      { name: "p", data_type: TYPE_FP32, dims: [ 4 ], label_filename: "labels.txt" },
      { name: "s", data_type: TYPE_STRING, dims: [ 1 ] },
      { name: "h", data_type: TYPE_BF16, dims: [ 4 ] }
    ]
    """
)
SPECS = {t.name: ModelTensor.from_config(t) for t in CONFIG.output}


def _strings(array: np.ndarray) -> list[object]:
    return np.vectorize(bytes.decode, otypes=[object])(array).tolist()  # type: ignore[no-any-return]


def test_only_outputs_asking_classification_are_ranked_whatever_else_they_ask() -> None:
    scores = np.array([[0.1, 0.7, 0.2, 0.0]], np.float32)
    outputs = {"p": scores, "h": scores}
    requested = [
        RequestedOutput("p", {"binary_data": True, "classification": 1}),
        RequestedOutput("h", {"binary_data": True}),
    ]
    classify_outputs(requested, outputs, SPECS, batched=True)
    assert _strings(outputs["p"]) == [["0.700000:1"]]
    assert outputs["h"] is scores


def test_the_documented_example_ranks_by_value() -> None:
    # Triton's documentation: [1.1, 3.3, 0.5, 2.4] with K=2 gives "3.3:1", "2.4:3" (its
    # C++ formatting prints six decimals).
    answer = top_k(np.array([[1.1, 3.3, 0.5, 2.4]], np.float32), 2, (), batched=True)
    assert answer.shape == (1, 2)
    assert _strings(answer) == [["3.300000:1", "2.400000:3"]]


def test_each_row_of_a_batch_is_ranked_on_its_own_with_labels() -> None:
    scores = np.array([[0.1, 0.7, 0.2], [0.9, 0.0, 0.5]], np.float64)
    answer = top_k(scores, 2, ("cat", "", "bird"), batched=True)
    # An empty line of the label file: that index has no label.
    assert _strings(answer) == [
        ["0.700000:1", "0.200000:2:bird"],
        ["0.900000:0:cat", "0.500000:2:bird"],
    ]


def test_integers_print_as_integers_and_k_is_clamped_to_the_class_count() -> None:
    answer = top_k(np.array([1, 5, 10, 4], np.uint8), 9, (), batched=False)
    assert answer.shape == (4,)
    assert _strings(answer) == ["10:2", "5:1", "4:3", "1:0"]


def test_equal_scores_keep_the_lower_index_first() -> None:
    answer = top_k(np.array([[3, 7, 7, 7, 1]], np.int64), 3, (), batched=True)
    assert _strings(answer) == [["7:1", "7:2", "7:3"]]


def test_a_multi_dimensional_row_is_ranked_by_its_flat_index() -> None:
    answer = top_k(np.array([[[0, 9], [8, 1]]], np.int32), 2, (), batched=True)
    assert _strings(answer) == [["9:1", "8:2"]]


def test_an_unbatched_model_ranks_the_whole_tensor() -> None:
    answer = top_k(np.array([[0, 9], [8, 1]], np.int16), 1, (), batched=False)
    assert _strings(answer) == ["9:1"]


@pytest.mark.parametrize("value", [0, -1, 2.0, "2", True, None])
def test_k_must_be_a_positive_integer(value: object) -> None:
    output = RequestedOutput("p", {"classification": value})
    if value is None:
        assert class_count(output) == 0
        return
    with pytest.raises(InvalidArgument, match="expected a positive integer"):
        class_count(output)


@pytest.mark.parametrize(("name", "datatype"), [("s", "BYTES"), ("h", "BF16")])
def test_an_output_that_cannot_be_ranked_is_refused(name: str, datatype: str) -> None:
    with pytest.raises(InvalidArgument, match=f"unsupported type '{datatype}'"):
        check_classification(RequestedOutput(name, {"classification": 1}), SPECS[name])


def test_classification_into_shared_memory_is_refused() -> None:
    output = RequestedOutput("p", {"classification": 1, "shared_memory_region": "r"})
    with pytest.raises(InvalidArgument, match="can't set both 'shared_memory_region'"):
        check_classification(output, SPECS["p"])


def test_labels_are_read_line_by_line_from_the_model_folder(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("cat\n\nbird\n")
    labelled = with_labels("m", SPECS, CONFIG.output, tmp_path)
    assert labelled["p"].labels == ("cat", "", "bird")
    assert labelled["s"].labels == ()


def test_a_label_file_outside_the_model_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("x\n")
    with pytest.raises(Unsupported, match="outside model directory"):
        read_labels("m", "p", "../labels.txt", tmp_path / "model")
