"""XGBoost boosters trained here, saved as model.json and model.bst (model.ubj: the convert
tests), and served by the real server: answers equal the booster's own, over HTTP and gRPC."""

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

xgboost = pytest.importorskip("xgboost")

CONFIGS = {
    "classifier_batched": 'backend: "xgboost"\nmax_batch_size: 16\n'
    "dynamic_batching { max_queue_delay_microseconds: 20000 }\n"
    'parameters { key: "nthread" value { string_value: "1" } }\n',
    "accelerated": 'backend: "xgboost"\n'
    "optimization { execution_accelerators {\n"
    '  cpu_execution_accelerator [{ name: "onnxruntime" }] } }\n',
    "margin_by_parameter": 'backend: "xgboost"\n'
    'parameters { key: "output_margin" value { string_value: "true" } }\n',
    # Both outputs, the margin chosen by its name.
    "two_outputs": 'backend: "xgboost"\nmax_batch_size: 8\n'
    'input [{ name: "input__0" data_type: TYPE_FP32 dims: [ 5 ] }]\n'
    'output [{ name: "predict" data_type: TYPE_FP32 dims: [ 3 ] },\n'
    '        { name: "output_margin" data_type: TYPE_FP32 dims: [ 3 ] }]\n',
}


@pytest.fixture(scope="module")
def boosters(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("xgboost_repository")
    built = {
        "classifier": models.xgboost_model(root / "classifier" / "1", "model.json"),
        "regressor": models.xgboost_model(root / "regressor" / "1", "model.bst", regression=True),
    }
    for name in CONFIGS:
        built[name] = models.xgboost_model(root / name / "1", "model.json")
        (root / name / "config.pbtxt").write_text(f'name: "{name}"\n{CONFIGS[name]}')
    (root / "not_xgboost" / "1").mkdir(parents=True)
    (root / "not_xgboost" / "1" / "model.json").write_text('{"weights": [1, 2]}')
    return root, built


@pytest.fixture(scope="module")
def server(boosters: tuple[Path, dict[str, Any]]) -> Iterator[RunningServer]:
    with running_server(boosters[0], "--no-strict-readiness") as running:
        yield running


def _predict(booster: Any, x: np.ndarray, **options: Any) -> np.ndarray:
    result: np.ndarray = booster.predict(xgboost.DMatrix(x), **options)
    return result


def test_config_is_completed_from_the_booster(server: RunningServer) -> None:
    assert io_config(server, "classifier") == (
        [("input__0", "TYPE_FP32", [5])],
        [("predict", "TYPE_FP32", [3])],
        4,
    )
    assert io_config(server, "regressor")[1] == [("predict", "TYPE_FP32", [])]


def test_answers_equal_the_booster(
    server: RunningServer, boosters: tuple[Path, dict[str, Any]]
) -> None:
    x = models.features(20, 3)
    for name in ("classifier", "regressor"):
        for answer in infer_http_and_grpc(server, name, {"input__0": x}):
            np.testing.assert_allclose(answer["predict"], _predict(boosters[1][name], x), rtol=1e-6)


def test_margin_by_output_name_or_parameter(
    server: RunningServer, boosters: tuple[Path, dict[str, Any]]
) -> None:
    x = models.features(21, 2)
    booster = boosters[1]["two_outputs"]
    for answer in infer_http_and_grpc(server, "two_outputs", {"input__0": x}):
        np.testing.assert_allclose(answer["predict"], _predict(booster, x), rtol=1e-6)
        np.testing.assert_allclose(
            answer["output_margin"], _predict(booster, x, output_margin=True), rtol=1e-6
        )
    margin = _predict(boosters[1]["margin_by_parameter"], x, output_margin=True)
    for answer in infer_http_and_grpc(server, "margin_by_parameter", {"input__0": x}):
        np.testing.assert_allclose(answer["predict"], margin, rtol=1e-6)


def test_concurrent_clients_are_batched(
    server: RunningServer, boosters: tuple[Path, dict[str, Any]]
) -> None:
    booster = boosters[1]["classifier_batched"]
    rows = models.features(22, 48)
    assert_batched_under_concurrency(
        server, "classifier_batched", rows, "predict", lambda x: _predict(booster, x)
    )


def test_bad_shape_or_dtype_is_a_client_error(server: RunningServer) -> None:
    assert_rejected(server, "classifier", {"input__0": models.features(23, 2)[:, :3]}, "shape")
    assert_rejected(server, "classifier", {"input__0": np.zeros((1, 5), np.int32)}, "INT32")


def test_a_json_file_of_something_else_says_so(server: RunningServer) -> None:
    state, reason = model_states(server)["not_xgboost"]
    assert state == "UNAVAILABLE"
    assert "'model.json' holds no XGBoost model" in reason
    assert "backend" in reason


def test_execution_accelerators_point_to_inferd_convert(server: RunningServer) -> None:
    state, reason = model_states(server)["accelerated"]
    assert state == "UNAVAILABLE"
    assert "inferd convert" in reason
