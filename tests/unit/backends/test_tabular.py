"""Joining a batch's inputs into one feature table, and shaping a library's answers."""

from __future__ import annotations

import numpy as np
import pytest

from inferd.backends.feature_table import AS_TEXT, FeatureTable
from inferd.backends.tabular import OutputSpec, config_type, threads_per_instance
from inferd.core.errors import InvalidArgument
from inferd.core.model_config import parse_pbtxt
from tests.unit.core.test_usable_cpus import on_cpus

THREE_INPUTS = """max_batch_size: 4
input [
  { name: "b" data_type: TYPE_FP32 dims: [ 2 ] },
  { name: "a" data_type: TYPE_INT32 dims: [ 1 ] },
  { name: "c" data_type: TYPE_STRING dims: [ 1 ] }
]
"""


def test_inputs_named_after_the_features_take_their_order() -> None:
    config = parse_pbtxt(THREE_INPUTS.replace("dims: [ 2 ]", "dims: [ 1 ]"))
    table = FeatureTable(config, ["a", "b", "c"], 3, categories=AS_TEXT, model="m")
    rows = table.table({
        "b": np.array([[1.5], [2.5]], np.float32),
        "a": np.array([[1], [2]], np.int32),
        "c": np.array([[b"x"], [b"\xc3\xa9"]], np.object_),
    })  # fmt: skip
    assert rows.dtype == np.object_
    assert rows.tolist() == [[1, 1.5, "x"], [2, 2.5, "é"]]


def test_other_inputs_keep_the_config_order_and_must_fill_the_width() -> None:
    config = parse_pbtxt(THREE_INPUTS)
    table = FeatureTable(config, None, 4, categories=AS_TEXT, model="m")
    assert table.order == ["b", "a", "c"]
    with pytest.raises(InvalidArgument, match="takes 5 features, but the config's inputs"):
        FeatureTable(config, None, 5, categories=AS_TEXT, model="m")


def test_half_matching_names_and_text_for_a_booster_are_refused() -> None:
    config = parse_pbtxt(THREE_INPUTS)
    with pytest.raises(InvalidArgument, match=r"missing \['d'\], unknown \['c'\]"):
        FeatureTable(config, ["a", "b", "d"], None, categories=AS_TEXT, model="m")
    with pytest.raises(
        InvalidArgument, match=r"numbers only, but the config has TYPE_STRING inputs \['c'\]"
    ):
        FeatureTable(config, None, None, categories=[], model="m")


def test_text_columns_become_the_codes_of_the_model_categories() -> None:
    config = parse_pbtxt(THREE_INPUTS)
    table = FeatureTable(config, None, 4, categories=[["lo", "hi"]], model="m")
    rows = table.table({
        "b": np.array([[0.5, 1.5], [2.5, 3.5]], np.float32),
        "a": np.array([[7], [8]], np.int32),
        "c": np.array([[b"hi"], [b"unseen"]], np.object_),
    })  # fmt: skip
    assert rows.dtype == np.float64
    np.testing.assert_array_equal(rows, [[0.5, 1.5, 7, 1], [2.5, 3.5, 8, np.nan]])
    with pytest.raises(InvalidArgument, match="2 categorical columns"):
        FeatureTable(config, None, 4, categories=[["lo"], ["x"]], model="m")


def test_text_that_is_not_utf8_is_a_client_error() -> None:
    table = FeatureTable(parse_pbtxt(THREE_INPUTS), None, None, categories=AS_TEXT, model="m")
    inputs = {
        "b": np.zeros((1, 2), np.float32),
        "a": np.zeros((1, 1), np.int32),
        "c": np.array([[b"\xff"]], np.object_),
    }
    with pytest.raises(InvalidArgument, match="BYTES input 'c' is not UTF-8"):
        table.table(inputs)


def test_answers_take_the_configured_type_and_shape() -> None:
    column = OutputSpec("y", "predict", np.dtype(np.float32), (1,))
    shaped = column.shaped(np.array([1.0, 2.0]))
    assert shaped.dtype == np.float32 and shaped.shape == (2, 1)
    labels = OutputSpec("label", "predict", np.dtype(np.object_), ())
    assert labels.shaped(np.array([3, 4])).tolist() == ["3", "4"]


def test_config_types_of_numpy_dtypes() -> None:
    assert [config_type(np.dtype(t)) for t in ("float64", "int64", "uint8", "bool", "<U3")] == [
        "TYPE_FP64", "TYPE_INT64", "TYPE_UINT8", "TYPE_BOOL", "TYPE_STRING",
    ]  # fmt: skip
    assert config_type(np.dtype("complex64")) is None


def test_threads_are_the_usable_cpus_shared_among_instances() -> None:
    one, three = (
        parse_pbtxt("instance_group [{ count: 1 }]"),
        parse_pbtxt("instance_group [{ count: 3 }]"),
    )
    with on_cpus(2):
        assert threads_per_instance(one, "nthread") == 2
        assert threads_per_instance(three, "nthread") == 1
    with on_cpus(1):  # a server pinned to one CPU, on a machine of more
        assert threads_per_instance(one, "nthread") == 1
    config = parse_pbtxt('parameters { key: "nthread" value { string_value: "5" } }')
    assert threads_per_instance(config, "nthread") == 5
