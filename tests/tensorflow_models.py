"""Tiny real TensorFlow SavedModels for the TensorFlow backend's tests (TensorFlow imported by
the caller's first use, so collecting tests never imports it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SAVED_MODEL = "model.savedmodel"


def _tf() -> Any:
    import tensorflow as tf

    return tf


def mlp_model(version_path: Path, sizes: tuple[int, int, int] = (8, 16, 4)) -> Path:
    """`x` [None, 8] float32 -> `y` [None, 4]: dense, relu, dense, with fixed weights."""
    tf = _tf()
    rng = np.random.default_rng(0)
    first, hidden, last = sizes

    class Mlp(tf.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.w1 = tf.Variable(rng.standard_normal((first, hidden), np.float32))
            self.w2 = tf.Variable(rng.standard_normal((hidden, last), np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, first], tf.float32)])
        def serve(self, x: Any) -> Any:
            return {"y": tf.matmul(tf.nn.relu(tf.matmul(x, self.w1)), self.w2)}

    return _save(Mlp(), version_path, "serve")


def two_signature_model(version_path: Path) -> Path:
    """serving_default: `a`, `b` [None, 4] float32 -> `sum`, `scaled` (a * b * 3);
    signature `difference`: `a`, `b` -> `diff`."""
    tf = _tf()

    class Two(tf.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.scale = tf.Variable(3.0)

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)] * 2)
        def serve(self, a: Any, b: Any) -> Any:
            return {"sum": a + b, "scaled": a * b * self.scale}

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)] * 2)
        def difference(self, a: Any, b: Any) -> Any:
            return {"diff": a - b}

    module = Two()
    return _save(module, version_path, "serve", difference=module.difference)


def string_model(version_path: Path) -> Path:
    """`text` [None] tf.string -> `upper` (tf.string) and `length` (int32, bytes per element)."""
    tf = _tf()

    class Strings(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, text: Any) -> Any:
            return {"upper": tf.strings.upper(text), "length": tf.strings.length(text)}

    return _save(Strings(), version_path, "serve")


def any_rank_model(version_path: Path) -> Path:
    """`x` of any rank, float32 -> `doubled`: a signature that gives no shape at all."""
    tf = _tf()

    class AnyRank(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec(None, tf.float32)])
        def serve(self, x: Any) -> Any:
            return {"doubled": x * 2.0}

    return _save(AnyRank(), version_path, "serve")


def accumulate_state_model(version_path: Path) -> Path:
    """The implicit-state accumulator: `INPUT`, `INPUT_STATE` [None, 1] int32 -> `OUTPUT` and
    `OUTPUT_STATE`, both INPUT_STATE + INPUT."""
    tf = _tf()

    class Accumulate(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.int32)] * 2)
        def serve(self, INPUT: Any, INPUT_STATE: Any) -> Any:  # the signature input names
            total = INPUT_STATE + INPUT
            return {"OUTPUT": total, "OUTPUT_STATE": total}

    return _save(Accumulate(), version_path, "serve")


def _save(module: Any, version_path: Path, default: str, **signatures: Any) -> Path:
    tf = _tf()
    path = version_path / SAVED_MODEL
    function = getattr(module, default)
    tf.saved_model.save(module, str(path), signatures={"serving_default": function, **signatures})
    return path


def call(saved_model: Path, signature: str = "serving_default", **inputs: Any) -> dict[str, Any]:
    """Outputs of a SavedModel signature called directly with TensorFlow, as numpy arrays."""
    tf = _tf()
    restored = tf.saved_model.load(str(saved_model))
    results = restored.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return {name: value.numpy() for name, value in results.items()}
