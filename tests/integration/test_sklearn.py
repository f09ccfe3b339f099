"""scikit-learn models trained here, pickled, and served by the real server: answers equal
the estimator's own, over HTTP and gRPC."""

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

pytest.importorskip("sklearn")
pytest.importorskip("joblib")

MIXED_INPUTS = """max_batch_size: 8
input [
  { name: "age" data_type: TYPE_FP32 dims: [ 1 ] },
  { name: "city" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "visits" data_type: TYPE_INT64 dims: [ 1 ] }
]
"""
CONFIGS = {
    "classifier_batched": 'backend: "sklearn"\nmax_batch_size: 16\n'
    "dynamic_batching { max_queue_delay_microseconds: 20000 }\n",
    # The minimal config: a name and the backend; the rest comes from the pickle.
    "regression": 'backend: "sklearn"\n',
    "scores": 'backend: "sklearn"\nmax_batch_size: 8\n'
    'input [{ name: "input__0" data_type: TYPE_FP32 dims: [ 5 ] }]\n'
    'output [{ name: "scores" data_type: TYPE_FP64 dims: [ 3 ] }]\n'
    'parameters { key: "method" value { string_value: "decision_function" } }\n',
    "mixed_array": MIXED_INPUTS,
    "mixed_frame": MIXED_INPUTS,
    "frame_misnamed": MIXED_INPUTS.replace('"age"', '"years"')
    .replace('"city"', '"town"')
    .replace('"visits"', '"calls"'),
}


@pytest.fixture(scope="module")
def estimators(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("sklearn_repository")
    classifier = models.sklearn_classifier()
    built = {
        "classifier": models.dump(classifier, root / "classifier" / "1", "model.joblib"),
        "classifier_batched": models.dump(classifier, root / "classifier_batched" / "1",
                                          "model.joblib"),
        "scores": models.dump(classifier, root / "scores" / "1", "model.joblib"),
        "regression": models.dump(models.sklearn_regression_pipeline(), root / "regression" / "1",
                                  "model.pkl"),
        "mixed_array": models.dump(models.column_transformer_on_array(),
                                   root / "mixed_array" / "1", "model.joblib"),
    }  # fmt: skip
    if models.has_pandas():
        built["mixed_frame"] = models.dump(
            models.column_transformer_on_frame(), root / "mixed_frame" / "1", "model.joblib"
        )
        built["frame_misnamed"] = models.dump(
            built["mixed_frame"], root / "frame_misnamed" / "1", "model.joblib"
        )
        built["numbers_frame"] = models.dump(
            models.regression_on_frame(), root / "numbers_frame" / "1", "model.joblib"
        )
    _unservable(root)
    for name, config in CONFIGS.items():
        if name in built:
            (root / name / "config.pbtxt").write_text(f'name: "{name}"\n{config}')
    return root, built


def _unservable(root: Path) -> None:
    """Pickles the backend cannot tell enough from."""
    from sklearn.linear_model import LogisticRegression

    models.dump(LogisticRegression(), root / "unfitted" / "1", "model.joblib")
    models.dump({"weights": [1, 2]}, root / "not_a_model" / "1", "model.pkl")
    (root / "garbage" / "1").mkdir(parents=True)
    (root / "garbage" / "1" / "model.pkl").write_bytes(b"not a pickle")


@pytest.fixture(scope="module")
def server(estimators: tuple[Path, dict[str, Any]]) -> Iterator[RunningServer]:
    with running_server(estimators[0], "--no-strict-readiness") as running:
        yield running


def test_config_is_completed_from_the_pickle(server: RunningServer) -> None:
    inputs, outputs, batch = io_config(server, "classifier")
    assert inputs == [("input__0", "TYPE_FP32", [5])]
    assert outputs == [("predict", "TYPE_INT64", []), ("predict_proba", "TYPE_FP32", [3])]
    assert batch == 4  # the server's --default-max-batch-size: batching is on
    inputs, outputs, _ = io_config(server, "regression")
    assert inputs == [("input__0", "TYPE_FP32", [5])]
    assert outputs == [("predict", "TYPE_FP32", [])]


def test_answers_equal_the_estimator(
    server: RunningServer, estimators: tuple[Path, dict[str, Any]]
) -> None:
    x = models.features(10, 3)
    classifier, regression = estimators[1]["classifier"], estimators[1]["regression"]
    for answer in infer_http_and_grpc(server, "classifier", {"input__0": x}):
        np.testing.assert_array_equal(answer["predict"], classifier.predict(x))
        np.testing.assert_array_equal(answer["predict_proba"], classifier.predict_proba(x))
    for answer in infer_http_and_grpc(server, "regression", {"input__0": x}):
        np.testing.assert_array_equal(answer["predict"], regression.predict(x))


def test_a_model_fitted_on_a_frame_takes_one_input_of_its_columns(
    server: RunningServer, estimators: tuple[Path, dict[str, Any]]
) -> None:
    if "numbers_frame" not in estimators[1]:
        pytest.skip("pandas is not installed")
    import pandas as pd

    estimator = estimators[1]["numbers_frame"]
    assert io_config(server, "numbers_frame")[0] == [("input__0", "TYPE_FP32", [5])]
    x = models.features(16, 3)
    expected = estimator.predict(pd.DataFrame(x, columns=estimator.feature_names_in_))
    for answer in infer_http_and_grpc(server, "numbers_frame", {"input__0": x}):
        np.testing.assert_array_equal(answer["predict"], expected)


def test_one_output_asked_for_runs_only_its_method(
    server: RunningServer, estimators: tuple[Path, dict[str, Any]]
) -> None:
    x = models.features(11, 2)
    for answer in infer_http_and_grpc(server, "classifier", {"input__0": x}, ["predict_proba"]):
        assert list(answer) == ["predict_proba"]
        np.testing.assert_array_equal(
            answer["predict_proba"], estimators[1]["classifier"].predict_proba(x)
        )


def test_method_chosen_by_config_parameter(
    server: RunningServer, estimators: tuple[Path, dict[str, Any]]
) -> None:
    x = models.features(12, 4)
    expected = estimators[1]["scores"].decision_function(x).astype(np.float64)
    for answer in infer_http_and_grpc(server, "scores", {"input__0": x}):
        np.testing.assert_array_equal(answer["scores"], expected)


def test_mixed_type_columns_through_a_column_transformer(
    server: RunningServer, estimators: tuple[Path, dict[str, Any]]
) -> None:
    age, city, visits = models.mixed_table(13, 6)
    arrays = models.mixed_inputs(age, city, visits)
    table = np.column_stack([age.astype(np.object_), city, visits.astype(np.object_)])
    expected = {"mixed_array": estimators[1]["mixed_array"].predict_proba(table)}
    if "mixed_frame" in estimators[1]:
        import pandas as pd

        frame = pd.DataFrame({"age": age, "city": city, "visits": visits})
        expected["mixed_frame"] = estimators[1]["mixed_frame"].predict_proba(frame)
    for model, probabilities in expected.items():
        for answer in infer_http_and_grpc(server, model, arrays, ["predict_proba"]):
            np.testing.assert_allclose(answer["predict_proba"], probabilities, rtol=1e-12)


def test_unknown_category_is_a_client_error(server: RunningServer) -> None:
    arrays = {
        "age": np.array([[30.0]], dtype=np.float32),
        "city": np.array([[b"atlantis"]], dtype=np.object_),
        "visits": np.array([[3]], dtype=np.int64),
    }
    assert_rejected(server, "mixed_array", arrays, "scikit-learn rejected the inputs")


def test_concurrent_clients_are_batched(
    server: RunningServer, estimators: tuple[Path, dict[str, Any]]
) -> None:
    rows = models.features(14, 48)
    assert_batched_under_concurrency(
        server, "classifier_batched", rows, "predict_proba",
        estimators[1]["classifier"].predict_proba,
    )  # fmt: skip


def test_bad_shape_or_dtype_is_a_client_error(server: RunningServer) -> None:
    assert_rejected(server, "classifier", {"input__0": models.features(15, 2)[:, :4]}, "shape")
    wide = np.zeros((2, 5), dtype=np.float64)
    assert_rejected(server, "classifier", {"input__0": wide}, "FP64")


def test_models_it_cannot_tell_enough_about_say_which_config_to_add(
    server: RunningServer,
) -> None:
    states = model_states(server)
    state, reason = states["unfitted"]
    assert state == "UNAVAILABLE"
    assert "how many features" in reason and 'input [{ name: "input__0"' in reason
    assert states["not_a_model"][0] == "UNAVAILABLE"
    assert "neither predict nor transform" in states["not_a_model"][1]
    assert states["garbage"][0] == "UNAVAILABLE"
    assert "cannot read 'model.pkl'" in states["garbage"][1]
    if "frame_misnamed" in states:
        assert "name the config's inputs after them" in states["frame_misnamed"][1]
