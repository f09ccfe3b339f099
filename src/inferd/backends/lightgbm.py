"""LightGBM backend: a booster saved with `save_model` (`model.txt`).

`predict` gives what the objective predicts (a probability for `binary`, one per class for
`multiclass`, a value for regressions); an output named `raw_score` gives the raw scores,
and so does every output under the config parameter `raw_score: true`. `num_threads`
(config parameter) sets the threads of each instance's predictions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inferd.backends.boosters import BoosterBackend, read_error
from inferd.backends.tabular import import_extra
from inferd.core.types import Array


class LightGBMLibrary:
    title = "LightGBM"
    extra = "lightgbm"
    files: tuple[str, ...] = ("model.txt",)
    raw_method = "raw_score"
    threads_parameter = "num_threads"

    def read(self, path: Path) -> LightGBMBooster:
        lightgbm = import_extra("lightgbm", self.extra)
        try:
            booster = lightgbm.Booster(model_file=str(path))
        except lightgbm.basic.LightGBMError as exc:
            raise read_error(self.title, path, exc) from exc
        return LightGBMBooster(booster, lightgbm.basic.LightGBMError)


class LightGBMBooster:
    def __init__(self, booster: Any, error: type[Exception]) -> None:
        self._booster = booster
        self.rejected: tuple[type[Exception], ...] = (error,)
        self._threads = 1

    def n_features(self) -> int:
        return int(self._booster.num_feature())

    def feature_names(self) -> list[str] | None:
        return list(self._booster.feature_name())

    def categories(self) -> list[list[object]]:
        # Set when the booster was trained on a DataFrame with category columns.
        return [list(values) for values in self._booster.pandas_categorical or []]

    def use_threads(self, threads: int) -> None:
        self._threads = threads

    def predict(self, method: str, features: Array) -> Array:
        result: Array = self._booster.predict(
            features,
            raw_score=method == LightGBMLibrary.raw_method,
            num_threads=self._threads,
            validate_features=False,
        )
        return result


class LightGBMBackend(BoosterBackend):
    name = "lightgbm"
    library = LightGBMLibrary()
