"""What the scikit-learn, XGBoost and LightGBM backends share: models of feature tables.

Such a model takes one table (rows x feature columns) and answers with the results of a
method (`predict`, `predict_proba`, ...). By default the table is one FP32 input
`input__0` of dims [n_features], batched: a batch of rows is one call of the library.
A config may instead list several named inputs (the opt-in for mixed-type tables): their
columns are joined in feature order (the model's feature names when the inputs are named
after them, else the config's order), BYTES inputs as text columns.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferd.backends.autocomplete import ModelTensor, complete_tensors
from inferd.backends.base import BatchRequest
from inferd.core.datatypes import numpy_dtype
from inferd.core.errors import InvalidArgument, Unavailable
from inferd.core.model_config import (
    ModelConfig,
    data_type_name,
    int_parameter,
    tensor_datatype,
)
from inferd.core.types import Array
from inferd.core.usable_cpus import usable_cpus

DEFAULT_INPUT = "input__0"
_CONFIG_TYPE_BY_KIND = {"f": "TYPE_FP", "i": "TYPE_INT", "u": "TYPE_UINT"}


def import_extra(module: str, extra: str) -> Any:
    """A framework module, imported on first use; its absence makes the model UNAVAILABLE
    with the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise Unavailable(
            f"{module} is not installed ({exc}): pip install 'inferd[{extra}]'"
        ) from exc


def find_model_file(config: ModelConfig, version_path: Path, names: Sequence[str]) -> Path:
    """The config's `default_model_filename`, else the first of the backend's file names that
    the version folder holds."""
    if config.default_model_filename:
        candidates: Sequence[str] = [config.default_model_filename]
    else:
        candidates = names
    for name in candidates:
        if (version_path / name).is_file():
            return version_path / name
    raise InvalidArgument(f"model file {' or '.join(candidates)} not found in version folder")


def holds_any(version_path: Path, names: Sequence[str]) -> bool:
    return any((version_path / name).is_file() for name in names)


def config_type(dtype: np.dtype[Any]) -> str | None:
    """The model-config type of a numpy dtype (text is TYPE_STRING); None when it has none."""
    if dtype.kind in "USO":
        return "TYPE_STRING"
    if dtype.kind == "b":
        return "TYPE_BOOL"
    prefix = _CONFIG_TYPE_BY_KIND.get(dtype.kind)
    return None if prefix is None else f"{prefix}{dtype.itemsize * 8}"


def probe_outputs(
    call: Callable[[str, Array], Array], methods: Sequence[str], n_features: int
) -> list[ModelTensor]:
    """Each method's output as the model answers one row of zeros (batch axis dynamic)."""
    row = np.zeros((1, n_features), dtype=np.float32)
    outputs = []
    for method in methods:
        result = np.asarray(call(method, row))
        shape = (None, *result.shape[1:])
        outputs.append(ModelTensor(method, config_type(result.dtype), shape, str(result.dtype)))
    return outputs


def complete_table_config(
    config: ModelConfig,
    n_features: int | None,
    outputs: Sequence[ModelTensor],
    default_batch: int,
    model: str,
) -> None:
    """Fill inputs, outputs and batching: one FP32 input of `n_features` columns unless the
    config lists its own inputs; the outputs given unless it lists its own."""
    if config.input:
        inputs = [_config_tensor(t.name, t.data_type, t.dims) for t in config.input]
    elif n_features is None:
        raise InvalidArgument(
            f"{model} does not say how many features it takes: add its input to the config, "
            f'e.g. input [{{ name: "{DEFAULT_INPUT}" data_type: TYPE_FP32 dims: [ N ] }}] '
            "with max_batch_size: 8"
        )
    else:
        inputs = [ModelTensor(DEFAULT_INPUT, "TYPE_FP32", (None, n_features), "float32")]
    if config.output:
        outputs = [_config_tensor(t.name, t.data_type, t.dims) for t in config.output]
    complete_tensors(config, inputs, outputs, default_batch, model)


def _config_tensor(name: str, data_type: int, dims: Sequence[int]) -> ModelTensor:
    return ModelTensor(name, data_type_name(data_type), (None, *dims), "as configured")


def refuse_accelerators(config: ModelConfig, backend: str) -> None:
    """These backends run the library itself; ONNX Runtime runs the model after conversion."""
    if config.optimization.execution_accelerators.cpu_execution_accelerator:
        raise InvalidArgument(
            f"backend '{backend}' has no execution accelerators: to run this model on ONNX "
            "Runtime, convert it with `inferd convert` and serve the ONNX model"
        )


def threads_per_instance(config: ModelConfig, parameter: str) -> int:
    """The library's thread count: the config parameter, else the CPUs this process may use
    (`usable_cpus`: a pinned or quota-limited server cannot use all the machine's) shared
    evenly among the model's instances (so N instances do not each start one thread per CPU)."""
    given = int_parameter(config, parameter, minimum=1)
    if given is not None:
        return given
    instances = sum(max(group.count, 1) for group in config.instance_group) or 1
    return max(1, usable_cpus() // instances)


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """One configured output: the method that makes it and the type and dims it must have."""

    name: str
    method: str
    dtype: np.dtype[Any]
    dims: tuple[int, ...]

    def shaped(self, result: Any) -> Array:
        """The library's answer as the config declares it: a 1-D answer for dims [1] becomes a
        column, numbers take the configured type, non-text answers to a BYTES output become
        text."""
        array = np.asarray(result)
        if array.ndim == 1 and len(self.dims) == 1:
            array = array.reshape(-1, 1)
        if self.dtype.kind == "O":
            return array if array.dtype.kind in "USO" else array.astype(np.str_)
        return array if array.dtype == self.dtype else array.astype(self.dtype)


class TableInstance:
    """An instance of a table model: the batch's inputs become one table, and each method
    the requested outputs need is called once on it. Instances of a model share its library
    object, whose prediction methods only read it.

    `rejected`: the library's exceptions that mean the inputs were wrong (a client error).
    """

    def __init__(
        self,
        features: Callable[[Mapping[str, Array]], Any],
        call: Callable[[str, Any], Any],
        specs: Mapping[str, OutputSpec],
        rejected: tuple[type[Exception], ...],
        library: str,
    ) -> None:
        self._features = features
        self._call = call
        self._specs = specs
        self._rejected = rejected
        self._library = library

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> dict[str, Array]:
        features = self._features(inputs)
        answers: dict[str, Any] = {}
        outputs = {}
        for name in output_names:
            spec = self._specs[name]
            if spec.method not in answers:
                answers[spec.method] = self._answer(spec.method, features)
            outputs[name] = spec.shaped(answers[spec.method])
        return outputs

    def _answer(self, method: str, features: Any) -> Any:
        try:
            return self._call(method, features)
        except self._rejected as exc:
            raise InvalidArgument(f"{self._library} rejected the inputs: {exc}") from exc

    def close(self) -> None:
        self._features = self._call = _closed


def _closed(*args: Any) -> Any:
    raise Unavailable("the model instance is closed")


def output_specs(config: ModelConfig, method_of: Callable[[str], str]) -> dict[str, OutputSpec]:
    return {
        t.name: OutputSpec(
            t.name, method_of(t.name), numpy_dtype(tensor_datatype(t.data_type)), tuple(t.dims)
        )
        for t in config.output
    }
