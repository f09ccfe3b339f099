"""LightGBM boosters trained here, saved as model.txt, and served by the real server: answers
equal the booster's own, over HTTP and gRPC."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests import classic_models as models
from tests.integration.classic_helpers import (
    assert_batched_under_concurrency,
    assert_rejected,
    infer_http_and_grpc,
    io_config,
    model_states,
)
from tests.integration.server import RunningServer, running_server

pytest.importorskip("lightgbm")

OBJECTIVES = {"binary": "binary", "multiclass": "multiclass", "regression": "regression"}
CONFIGS = {
    "multiclass_batched": 'backend: "lightgbm"\nmax_batch_size: 16\n'
    "dynamic_batching { max_queue_delay_microseconds: 20000 }\n"
    'parameters { key: "num_threads" value { string_value: "1" } }\n',
    "raw_by_parameter": 'backend: "lightgbm"\n'
    'parameters { key: "raw_score" value { string_value: "true" } }\n',
    # Named feature columns, one input each (numbers only: LightGBM takes no text).
    "named_columns": 'backend: "lightgbm"\nmax_batch_size: 4\n'
    'input [{ name: "b" data_type: TYPE_FP32 dims: [ 2 ] },\n'
    '       { name: "a" data_type: TYPE_INT32 dims: [ 3 ] }]\n'
    'output [{ name: "predict" data_type: TYPE_FP64 dims: [ 1 ] },\n'
    '        { name: "raw_score" data_type: TYPE_FP64 dims: [ 1 ] }]\n',
    "text_input": 'backend: "lightgbm"\nmax_batch_size: 4\n'
    'input [{ name: "input__0" data_type: TYPE_STRING dims: [ 5 ] }]\n',
    "bad_thread_count": 'backend: "lightgbm"\n'
    'parameters { key: "num_threads" value { string_value: "0" } }\n',
}
CONFIG_OBJECTIVES = {"multiclass_batched": "multiclass"}
# A booster trained on a DataFrame with a category column: text in, coded as in training.
CATEGORIES_CONFIG = """backend: "lightgbm"
max_batch_size: 8
input [
  { name: "visits" data_type: TYPE_INT64 dims: [ 1 ] },
  { name: "city" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "age" data_type: TYPE_FP32 dims: [ 1 ] }
]
"""


@pytest.fixture(scope="module")
def boosters(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("lightgbm_repository")
    built = {name: models.lightgbm_model(root / name / "1", o) for name, o in OBJECTIVES.items()}
    for name, config in CONFIGS.items():
        objective = CONFIG_OBJECTIVES.get(name, "binary")
        built[name] = models.lightgbm_model(root / name / "1", objective)
        (root / name / "config.pbtxt").write_text(f'name: "{name}"\n{config}')
    if models.has_pandas():
        built["categories"] = models.lightgbm_on_categories(root / "categories" / "1")
        (root / "categories" / "config.pbtxt").write_text(CATEGORIES_CONFIG)
    (root / "not_lightgbm" / "1").mkdir(parents=True)
    (root / "not_lightgbm" / "1" / "model.txt").write_text("hello\n")
    return root, built


@pytest.fixture(scope="module")
def server(boosters: tuple[Path, dict[str, Any]]) -> Iterator[RunningServer]:
    with running_server(boosters[0], "--no-strict-readiness") as running:
        yield running


def test_config_is_completed_from_the_booster(server: RunningServer) -> None:
    assert io_config(server, "multiclass") == (
        [("input__0", "TYPE_FP32", [5])],
        [("predict", "TYPE_FP64", [3])],
        4,
    )
    assert io_config(server, "binary")[1] == [("predict", "TYPE_FP64", [])]
    assert io_config(server, "regression")[1] == [("predict", "TYPE_FP64", [])]


def test_answers_equal_the_booster(
    server: RunningServer, boosters: tuple[Path, dict[str, Any]]
) -> None:
    x = models.features(30, 3)
    for name in OBJECTIVES:
        for answer in infer_http_and_grpc(server, name, {"input__0": x}):
            np.testing.assert_array_equal(answer["predict"], boosters[1][name].predict(x))


def test_raw_score_by_parameter(
    server: RunningServer, boosters: tuple[Path, dict[str, Any]]
) -> None:
    x = models.features(31, 2)
    raw = boosters[1]["raw_by_parameter"].predict(x, raw_score=True)
    for answer in infer_http_and_grpc(server, "raw_by_parameter", {"input__0": x}):
        np.testing.assert_array_equal(answer["predict"], raw)


def test_named_columns_in_any_order_and_raw_score_by_name(
    server: RunningServer, boosters: tuple[Path, dict[str, Any]]
) -> None:
    # Without feature names in the model, columns follow the config: b (2), then a (3).
    x = models.features(32, 3)
    arrays = {"a": np.round(x[:, 2:]).astype(np.int32), "b": x[:, :2]}
    table = np.column_stack([arrays["b"], arrays["a"]])
    booster = boosters[1]["named_columns"]
    for answer in infer_http_and_grpc(server, "named_columns", arrays):
        np.testing.assert_array_equal(answer["predict"][:, 0], booster.predict(table))
        np.testing.assert_array_equal(
            answer["raw_score"][:, 0], booster.predict(table, raw_score=True)
        )


def test_text_categories_are_coded_as_in_training(
    server: RunningServer, boosters: tuple[Path, dict[str, Any]]
) -> None:
    if "categories" not in boosters[1]:
        pytest.skip("pandas is not installed")
    import pandas as pd

    age, city, visits = models.mixed_table(35, 6)
    city[0] = "atlantis"  # never seen in training: a missing value, as LightGBM treats it
    # LightGBM recodes a DataFrame's categories to those it was trained with.
    frame = pd.DataFrame({"age": age, "city": pd.Categorical(city), "visits": visits})
    expected = boosters[1]["categories"].predict(frame)
    for answer in infer_http_and_grpc(server, "categories", models.mixed_inputs(age, city, visits)):
        np.testing.assert_array_equal(answer["predict"], expected)


def test_concurrent_clients_are_batched(
    server: RunningServer, boosters: tuple[Path, dict[str, Any]]
) -> None:
    rows = models.features(33, 48)
    booster = boosters[1]["multiclass_batched"]
    assert_batched_under_concurrency(server, "multiclass_batched", rows, "predict", booster.predict)


def test_bad_shape_or_dtype_is_a_client_error(server: RunningServer) -> None:
    assert_rejected(server, "binary", {"input__0": models.features(34, 2)[:, :2]}, "shape")
    assert_rejected(server, "binary", {"input__0": np.zeros((1, 5), np.float64)}, "FP64")


def test_unservable_models_say_why(server: RunningServer) -> None:
    states = model_states(server)
    assert states["not_lightgbm"][0] == "UNAVAILABLE"
    assert "'model.txt' holds no LightGBM model" in states["not_lightgbm"][1]
    assert states["text_input"][0] == "UNAVAILABLE"
    assert "TYPE_STRING" in states["text_input"][1]
    assert "num_threads" in states["bad_thread_count"][1]
