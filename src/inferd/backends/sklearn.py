"""scikit-learn backend: a pickled estimator or pipeline (`model.joblib` or `model.pkl`).

Loading a pickle runs code the file names: serve only files you trust. Each output is the
answer of one method: an output named `predict`, `predict_proba`, `predict_log_proba`,
`decision_function` or `transform` calls that method; any other output calls the config
parameter `method` (default `predict`). A batch is one call. Instances share the one
unpickled estimator: its prediction methods only read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from inferd.backends.autocomplete import ModelTensor, name_backend
from inferd.backends.base import Device
from inferd.backends.feature_table import AS_TEXT, FeatureTable
from inferd.backends.tabular import (
    OutputSpec,
    TableInstance,
    config_type,
    find_model_file,
    holds_any,
    import_extra,
    output_specs,
    probe_outputs,
    refuse_accelerators,
)
from inferd.backends.tabular import complete_table_config as complete_table
from inferd.core.errors import InvalidArgument, Unavailable
from inferd.core.model_config import ModelConfig, string_parameter
from inferd.core.types import Array

FILES = ("model.joblib", "model.pkl")
METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "transform")


def read_estimator(path: Path) -> Any:
    """The estimator a joblib or pickle file holds (joblib reads plain pickles too)."""
    joblib = import_extra("joblib", "sklearn")
    import_extra("sklearn", "sklearn")
    try:
        return joblib.load(path)
    except ModuleNotFoundError as exc:
        raise Unavailable(f"'{path.name}' needs a module that is not installed: {exc}") from exc
    except Exception as exc:
        raise InvalidArgument(f"cannot read '{path.name}' as a pickled model: {exc}") from exc


class SklearnBackend:
    name = "sklearn"
    platforms: tuple[str, ...] = ()
    default_model_filename = FILES[0]

    def gpu_available(self) -> bool:
        return False

    def matches(self, version_path: Path) -> bool:
        return holds_any(version_path, FILES)

    def complete_config(
        self, config: ModelConfig, version_path: Path, default_max_batch_size: int
    ) -> None:
        path = find_model_file(config, version_path, FILES)
        estimator = read_estimator(path)
        name_backend(config, self.name, None)
        n_features = getattr(estimator, "n_features_in_", None)
        methods = _default_methods(estimator, config)
        outputs = None
        if not config.input and not config.output and n_features is not None:
            outputs = _probed(estimator, methods, n_features)
        if outputs is None:
            outputs = [_declared_output(estimator, method) for method in methods]
        model = f"scikit-learn model '{path.name}' ({type(estimator).__name__})"
        complete_table(config, n_features, outputs, default_max_batch_size, model)

    def load(self, config: ModelConfig, version_path: Path) -> SklearnModel:
        refuse_accelerators(config, self.name)
        path = find_model_file(config, version_path, FILES)
        estimator = read_estimator(path)
        default = _method_parameter(config)
        specs = output_specs(config, lambda name: name if name in METHODS else default)
        for spec in specs.values():
            if not _has(estimator, spec.method):
                raise InvalidArgument(
                    f"output '{spec.name}' calls {spec.method}, which the "
                    f"{type(estimator).__name__} in '{path.name}' lacks; it has "
                    f"{[m for m in METHODS if _has(estimator, m)]}"
                )
        names = getattr(estimator, "feature_names_in_", None)
        table = FeatureTable(
            config,
            None if names is None else [str(n) for n in names],
            getattr(estimator, "n_features_in_", None),
            categories=AS_TEXT,
            model=f"'{path.name}'",
        )
        return SklearnModel(estimator, table, specs)


def _has(estimator: Any, method: str) -> bool:
    # hasattr, since scikit-learn hides methods a fitted estimator cannot offer (available_if).
    return hasattr(estimator, method)


def _method_parameter(config: ModelConfig) -> str:
    method = string_parameter(config, "method") or "predict"
    if method not in METHODS:
        raise InvalidArgument(f"parameter 'method' must be one of {list(METHODS)}, got '{method}'")
    return method


def _default_methods(estimator: Any, config: ModelConfig) -> list[str]:
    """The outputs auto-complete offers: the `method` parameter's, else predict (and
    predict_proba where the estimator has it), else transform."""
    if string_parameter(config, "method"):
        return [_method_parameter(config)]
    if _has(estimator, "predict"):
        return ["predict", *(["predict_proba"] if _has(estimator, "predict_proba") else [])]
    if _has(estimator, "transform"):
        return ["transform"]
    raise InvalidArgument(
        f"{type(estimator).__name__} has neither predict nor transform: nothing to serve"
    )


def _probed(estimator: Any, methods: list[str], n_features: int) -> list[ModelTensor] | None:
    """Outputs as the estimator answers a row of zeros; None when it refuses that row (text
    columns, say), and the outputs are then declared from its attributes."""
    columns = _frame_columns(estimator)
    try:
        return probe_outputs(
            lambda m, x: getattr(estimator, m)(_frame(x, columns)), methods, n_features
        )
    except Exception:
        return None


def _declared_output(estimator: Any, method: str) -> ModelTensor:
    """An output as far as the estimator's attributes tell (unknown widths are -1)."""
    classes = getattr(estimator, "classes_", None)
    if not isinstance(classes, np.ndarray):  # a list of arrays for several targets
        classes = None
    if method == "predict" and classes is not None:
        return ModelTensor(method, config_type(classes.dtype), (None,), str(classes.dtype))
    width = None if classes is None else len(classes)
    if method == "decision_function" and width == 2:
        return ModelTensor(method, "TYPE_FP64", (None,), "float64")
    if method in ("predict_proba", "predict_log_proba", "decision_function"):
        return ModelTensor(method, "TYPE_FP64", (None, width), "float64")
    return ModelTensor(method, "TYPE_FP64", (None, None), "float64")


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        return None
    return pandas


def _frame_columns(estimator: Any) -> list[str] | None:
    """The columns of the DataFrame the estimator was fitted on: it is given one again (pandas
    is then there, as at training), so that names select columns as when it was fitted."""
    names = getattr(estimator, "feature_names_in_", None)
    return None if names is None or _pandas() is None else [str(n) for n in names]


def _frame(table: Array, columns: list[str] | None) -> Any:
    return table if columns is None else _pandas().DataFrame(table, columns=columns)


class SklearnModel:
    def __init__(self, estimator: Any, table: FeatureTable, specs: dict[str, OutputSpec]) -> None:
        self.estimator = estimator
        self.table = table
        self.specs = specs
        self.frame_columns = _frame_columns(estimator)
        if self.frame_columns and not table.single and set(table.order) != set(self.frame_columns):
            raise InvalidArgument(
                f"the model was fitted on a DataFrame with columns {self.frame_columns}: name "
                f"the config's inputs after them (they are {table.order})"
            )

    def create_instance(self, device: Device, name: str) -> TableInstance:
        # ValueError: scikit-learn's word for inputs it cannot take.
        return TableInstance(self.features, self.call, self.specs, (ValueError,), "scikit-learn")

    def call(self, method: str, features: Any) -> Any:
        return getattr(self.estimator, method)(features)

    def features(self, inputs: Mapping[str, Array]) -> Any:
        if self.frame_columns is None or self.table.single:
            return _frame(self.table.table(inputs), self.frame_columns)
        return _pandas().DataFrame({name: b[:, 0] for name, b in self.table.columns(inputs)})

    def close(self) -> None:
        self.estimator = None
