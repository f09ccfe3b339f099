"""The three lifetimes of a gradient-boosting backend (XGBoost, LightGBM), around a library.

A `Library` knows one framework: its files, how to read a booster, and its one alternative
to plain prediction (XGBoost's margin, LightGBM's raw score), answered by an output of that
name, or by every output when the true/false config parameter of that name is true. The
booster is read once per model and shared by its instances: both libraries allow concurrent
predictions on one booster, each with the thread count of its instance
(`threads_per_instance`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from inferd.backends.autocomplete import name_backend
from inferd.backends.base import Device
from inferd.backends.feature_table import FeatureTable
from inferd.backends.tabular import (
    OutputSpec,
    TableInstance,
    complete_table_config,
    find_model_file,
    holds_any,
    output_specs,
    probe_outputs,
    refuse_accelerators,
    threads_per_instance,
)
from inferd.core.errors import InvalidArgument
from inferd.core.model_config import ModelConfig, bool_parameter
from inferd.core.types import Array

PREDICT = "predict"


class Booster(Protocol):
    rejected: tuple[type[Exception], ...]  # the library's errors for inputs it cannot take

    def n_features(self) -> int: ...

    def feature_names(self) -> list[str] | None: ...

    def categories(self) -> list[list[object]]:
        """The categories of each categorical column the model was trained with, in order
        (text inputs are coded by them); empty when it takes numbers only."""

    def use_threads(self, threads: int) -> None:
        """The threads each prediction may use from now on."""

    def predict(self, method: str, features: Array) -> Array:
        """`method` is PREDICT or the library's `raw_method`."""


class Library(Protocol):
    title: str  # "XGBoost"
    extra: str  # the inferd extra that installs it
    files: tuple[str, ...]
    raw_method: str  # the output name and parameter of the raw answer
    threads_parameter: str

    def read(self, path: Path) -> Booster:
        """The booster in `path`; InvalidArgument when the file holds none."""


class BoosterBackend:
    """A backend for `library`; subclasses set `name` and `library`."""

    name: str
    library: Library
    platforms: tuple[str, ...] = ()

    @property
    def default_model_filename(self) -> str:
        return self.library.files[0]

    def gpu_available(self) -> bool:
        return False

    def matches(self, version_path: Path) -> bool:
        return holds_any(version_path, self.library.files)

    def complete_config(
        self, config: ModelConfig, version_path: Path, default_max_batch_size: int
    ) -> None:
        path = find_model_file(config, version_path, self.library.files)
        booster = self.library.read(path)
        name_backend(config, self.name, None)
        n_features = booster.n_features()
        outputs = probe_outputs(
            lambda method, x: booster.predict(self._method(config, method), x),
            [PREDICT],
            n_features,
        )
        model = f"{self.library.title} model '{path.name}'"
        complete_table_config(config, n_features, outputs, default_max_batch_size, model)

    def load(self, config: ModelConfig, version_path: Path) -> BoosterModel:
        refuse_accelerators(config, self.name)
        path = find_model_file(config, version_path, self.library.files)
        booster = self.library.read(path)
        table = FeatureTable(
            config,
            booster.feature_names(),
            booster.n_features(),
            categories=booster.categories(),
            model=f"{self.library.title} model '{path.name}'",
        )
        specs = output_specs(config, lambda name: self._method(config, name))
        booster.use_threads(threads_per_instance(config, self.library.threads_parameter))
        return BoosterModel(booster, table, specs, self.library.title)

    def _method(self, config: ModelConfig, output: str) -> str:
        raw = self.library.raw_method
        if output == raw or bool_parameter(config, raw, default=False):
            return raw
        return PREDICT


class BoosterModel:
    def __init__(
        self, booster: Booster, table: FeatureTable, specs: dict[str, OutputSpec], title: str
    ) -> None:
        self.booster = booster
        self.table = table
        self.specs = specs
        self.title = title

    def create_instance(self, device: Device, name: str) -> TableInstance:
        booster = self.booster
        return TableInstance(
            self.table.table, booster.predict, self.specs, booster.rejected, self.title
        )

    def close(self) -> None:
        self.booster = None  # type: ignore[assignment]


def read_error(title: str, path: Path, exc: Exception) -> InvalidArgument:
    return InvalidArgument(
        f"'{path.name}' holds no {title} model ({exc}); if it belongs to another framework, "
        'name its backend in config.pbtxt (e.g. backend: "sklearn" for a pickle)'
    )
