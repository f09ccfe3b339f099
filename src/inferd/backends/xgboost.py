"""XGBoost backend: a booster saved with `save_model` (`model.json`, `model.ubj`, or
`model.bst`, read as XGBoost reads it: JSON or UBJSON under XGBoost 3).

`predict` gives what the objective predicts (a probability for `binary:logistic`, one per
class for `multi:softprob`, a value for regressions); an output named `output_margin` gives
the untransformed margin, and so does every output under the config parameter
`output_margin: true`. `nthread` (config parameter) sets the threads of each instance's
predictions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inferd.backends.boosters import PREDICT, BoosterBackend, read_error
from inferd.backends.tabular import import_extra
from inferd.core.types import Array


class XGBoostLibrary:
    title = "XGBoost"
    extra = "xgboost"
    files: tuple[str, ...] = ("model.json", "model.ubj", "model.bst")
    raw_method = "output_margin"
    threads_parameter = "nthread"

    def read(self, path: Path) -> XGBoostBooster:
        xgboost = import_extra("xgboost", self.extra)
        booster = xgboost.Booster()
        try:
            booster.load_model(str(path))
        except xgboost.core.XGBoostError as exc:
            raise read_error(self.title, path, exc) from exc
        # A booster trained on a GPU keeps that device; serving runs on the CPU.
        booster.set_param({"device": "cpu"})
        return XGBoostBooster(booster, xgboost.core.XGBoostError)


class XGBoostBooster:
    def __init__(self, booster: Any, error: type[Exception]) -> None:
        self._booster = booster
        self.rejected: tuple[type[Exception], ...] = (error,)

    def n_features(self) -> int:
        return int(self._booster.num_features())

    def feature_names(self) -> list[str] | None:
        names = self._booster.feature_names
        return None if names is None else list(names)

    def categories(self) -> list[list[object]]:
        return []

    def use_threads(self, threads: int) -> None:
        self._booster.set_param({"nthread": threads})

    def predict(self, method: str, features: Array) -> Array:
        result: Array = self._booster.inplace_predict(
            features,
            predict_type="margin" if method != PREDICT else "value",
            validate_features=False,
        )
        return result


class XGBoostBackend(BoosterBackend):
    name = "xgboost"
    library = XGBoostLibrary()
