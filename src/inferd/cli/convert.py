"""`inferd convert`: a scikit-learn, XGBoost or LightGBM model folder as an ONNX model folder.

Each version folder of SOURCE holding a model file of those backends is converted (skl2onnx
for scikit-learn, onnxmltools for the boosters) into TARGET/<version>/model.onnx, which the
onnxruntime backend serves. The ONNX model's inputs are SOURCE's config inputs where it lists
them (mixed-type columns keep their names and types), else one FP32 `input__0` of the model's
feature count; classifiers answer `label` and `probabilities`, regressors `variable`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inferd.backends import sklearn
from inferd.backends.lightgbm import LightGBMLibrary
from inferd.backends.tabular import DEFAULT_INPUT, find_model_file, holds_any, import_extra
from inferd.backends.xgboost import XGBoostLibrary
from inferd.core.errors import InferdError, InvalidArgument
from inferd.core.model_config import ModelConfig, parse_pbtxt, tensor_datatype

# Input types as (name, V2 datatype, dims without the batch axis); converters map them to
# their own type classes.
InputTypes = list[tuple[str, str, list[int]]]
_TYPE_NAMES = {
    "FP32": "FloatTensorType",
    "FP64": "DoubleTensorType",
    "INT64": "Int64TensorType",
    "INT32": "Int32TensorType",
    "BYTES": "StringTensorType",
}
_EPILOG = """\
example: inferd convert models/churn models/churn_onnx
then serve models/ as usual: churn_onnx runs on ONNX Runtime (inputs and outputs auto-completed).
"""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a scikit-learn, XGBoost or LightGBM model folder to ONNX",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", type=Path, help="model folder (config and version folders)")
    parser.add_argument("target", type=Path, help="the ONNX model folder to write")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the converter's)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        written = convert(args.source, args.target, args.opset)
    except InferdError as error:
        print(f"inferd convert: {error.message}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


def convert(source: Path, target: Path, opset: int | None = None) -> list[Path]:
    """Write TARGET's config and one model.onnx per version of SOURCE; the files written."""
    config = _config(source)
    versions = sorted(
        (p for p in source.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    ) if source.is_dir() else []  # fmt: skip
    if not versions:
        raise InvalidArgument(f"'{source}' is not a model folder with version folders")
    onnx = import_extra("onnx", "convert")
    written = []
    for version in versions:
        converter, model_file = _converter(config, version)
        model = _converted(converter, model_file, _input_types(config), opset)
        _dynamic_batch_axis(model)
        path = target / version.name / "model.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save_model(model, str(path))
        written.append(path)
    config_file = target / "config.pbtxt"
    batch = f"max_batch_size: {config.max_batch_size}\n" if config.max_batch_size else ""
    config_file.write_text(f'backend: "onnxruntime"\n{batch}')
    return [config_file, *written]


def _config(source: Path) -> ModelConfig:
    path = source / "config.pbtxt"
    return parse_pbtxt(path.read_text(), str(path)) if path.is_file() else ModelConfig()


def _input_types(config: ModelConfig) -> InputTypes | None:
    """The config's inputs; None when it lists none (the converter uses the feature count)."""
    given = [(t.name, tensor_datatype(t.data_type), list(t.dims) or [1]) for t in config.input]
    return given or None


Converter = Callable[[Path, InputTypes | None, int | None], Any]


def _converter(config: ModelConfig, version: Path) -> tuple[Converter, Path]:
    for files, converter in (
        (sklearn.FILES, _from_sklearn),
        (XGBoostLibrary.files, _from_xgboost),
        (LightGBMLibrary.files, _from_lightgbm),
    ):
        if holds_any(version, files) or config.default_model_filename in files:
            return converter, find_model_file(config, version, files)
    raise InvalidArgument(f"'{version}' holds no scikit-learn, XGBoost or LightGBM model file")


def _types(module: Any, inputs: InputTypes | None, n_features: int) -> list[tuple[str, Any]]:
    given = inputs or [(DEFAULT_INPUT, "FP32", [n_features])]
    types = []
    for name, datatype, dims in given:
        if datatype not in _TYPE_NAMES:
            raise InvalidArgument(f"input '{name}': {datatype} has no ONNX converter type")
        types.append((name, getattr(module, _TYPE_NAMES[datatype])([None, *dims])))
    return types


def _from_sklearn(path: Path, inputs: InputTypes | None, opset: int | None) -> Any:
    estimator = sklearn.read_estimator(path)
    skl2onnx = import_extra("skl2onnx", "convert")
    data_types = import_extra("skl2onnx.common.data_types", "convert")
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    # ZipMap would answer a list of dicts per row, which is no tensor.
    options = {id(final): {"zipmap": False}} if hasattr(final, "predict_proba") else None
    types = _types(data_types, inputs, getattr(estimator, "n_features_in_", 0))
    return skl2onnx.to_onnx(estimator, initial_types=types, options=options, target_opset=opset)


def _from_xgboost(path: Path, inputs: InputTypes | None, opset: int | None) -> Any:
    booster = import_extra("xgboost", "xgboost").Booster(model_file=str(path))
    onnxmltools = import_extra("onnxmltools", "convert")
    data_types = import_extra("onnxmltools.convert.common.data_types", "convert")
    types = _types(data_types, inputs, booster.num_features())
    return onnxmltools.convert_xgboost(booster, initial_types=types, target_opset=opset)


def _from_lightgbm(path: Path, inputs: InputTypes | None, opset: int | None) -> Any:
    booster = import_extra("lightgbm", "lightgbm").Booster(model_file=str(path))
    onnxmltools = import_extra("onnxmltools", "convert")
    data_types = import_extra("onnxmltools.convert.common.data_types", "convert")
    types = _types(data_types, inputs, booster.num_feature())
    return onnxmltools.convert_lightgbm(
        booster, initial_types=types, target_opset=opset, zipmap=False
    )


def _converted(
    converter: Converter, model_file: Path, inputs: InputTypes | None, opset: int | None
) -> Any:
    try:
        return converter(model_file, inputs, opset)
    except InferdError:
        raise
    except Exception as exc:  # the libraries raise many kinds for models they do not cover
        raise InvalidArgument(f"cannot convert '{model_file}': {exc}") from exc


def _dynamic_batch_axis(model: Any) -> None:
    """Every input and output of a table model has rows first; converters sometimes fix that
    axis to 1, which would switch batching off."""
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_param = "N"
