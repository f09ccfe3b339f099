"""`inferd convert` turns scikit-learn, XGBoost and LightGBM model folders into ONNX model
folders, which the real server serves with answers close to the library's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferd.cli.main import main
from tests import classic_models as models
from tests.integration.classic_helpers import infer_http_and_grpc, io_config
from tests.integration.server import RunningServer, running_server

for module in ("skl2onnx", "onnxmltools", "sklearn", "xgboost", "lightgbm", "pandas"):
    pytest.importorskip(module)

MIXED_CONFIG = """max_batch_size: 8
input [
  { name: "age" data_type: TYPE_FP32 dims: [ 1 ] },
  { name: "city" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "visits" data_type: TYPE_INT64 dims: [ 1 ] }
]
"""


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    sources, target = tmp_path_factory.mktemp("native"), tmp_path_factory.mktemp("onnx")
    built = {
        "sk": models.dump(models.sklearn_classifier(), sources / "sk" / "1", "model.joblib"),
        "mixed": models.dump(models.column_transformer_on_frame(), sources / "mixed" / "1",
                             "model.joblib"),
        "xgb": models.xgboost_model(sources / "xgb" / "1", "model.ubj"),
        "lgb": models.lightgbm_model(sources / "lgb" / "1", "multiclass"),
    }  # fmt: skip
    (sources / "mixed" / "config.pbtxt").write_text(MIXED_CONFIG)
    for name in built:
        assert main(["convert", str(sources / name), str(target / name)]) == 0
    return target, built


@pytest.fixture(scope="module")
def server(converted: tuple[Path, dict[str, Any]]) -> Iterator[RunningServer]:
    with running_server(converted[0]) as running:
        yield running


def test_converted_models_are_onnx_models_that_batch(server: RunningServer) -> None:
    inputs, outputs, batch = io_config(server, "sk")
    assert inputs == [("input__0", "TYPE_FP32", [5])]
    assert outputs == [("label", "TYPE_INT64", []), ("probabilities", "TYPE_FP32", [3])]
    assert batch == 4
    assert io_config(server, "mixed")[2] == 8
    assert io_config(server, "lgb")[1][1] == ("probabilities", "TYPE_FP32", [3])


def test_answers_are_the_libraries(
    server: RunningServer, converted: tuple[Path, dict[str, Any]]
) -> None:
    import xgboost

    x = models.features(40, 4)
    built = converted[1]
    expected = {
        "sk": built["sk"].predict_proba(x),
        "xgb": built["xgb"].predict(xgboost.DMatrix(x)),
        "lgb": built["lgb"].predict(x),
    }
    for name, probabilities in expected.items():
        for answer in infer_http_and_grpc(server, name, {"input__0": x}, ["probabilities"]):
            np.testing.assert_allclose(answer["probabilities"], probabilities, rtol=1e-5, atol=1e-6)


def test_mixed_type_pipeline_keeps_its_named_columns(
    server: RunningServer, converted: tuple[Path, dict[str, Any]]
) -> None:
    import pandas as pd

    age, city, visits = models.mixed_table(41, 5)
    arrays = models.mixed_inputs(age, city, visits)
    frame = pd.DataFrame({"age": age, "city": city, "visits": visits})
    expected = converted[1]["mixed"].predict_proba(frame)
    for answer in infer_http_and_grpc(server, "mixed", arrays, ["probabilities"]):
        np.testing.assert_allclose(answer["probabilities"], expected, rtol=1e-5, atol=1e-6)


def test_a_folder_without_a_model_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty" / "1").mkdir(parents=True)
    assert main(["convert", str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
    assert "holds no scikit-learn, XGBoost or LightGBM model file" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "is not a model folder" in capsys.readouterr().err
