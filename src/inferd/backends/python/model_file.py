"""Find and import the user's `model.py`: each load gets its own module name, so two models
(or two versions of one) never share module state, and unloading forgets the module."""

from __future__ import annotations

import ast
import importlib.util
import itertools
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inferd.backends.python import triton_utils
from inferd.backends.python.triton import TritonModelAdapter
from inferd.core.errors import InvalidArgument

MODEL_CLASS = "InferdModel"
TRITON_MODEL_CLASS = "TritonPythonModel"
TRITON_UTILS_MODULE = "triton_python_backend_utils"

_counter = itertools.count()

ModelFactory = Callable[[], Any]  # a new model object: initialize / execute / finalize


def check_model_file(path: Path) -> None:
    """Refuse a missing file or one defining neither model class, without running it."""
    if not path.is_file():
        raise InvalidArgument(f"model file '{path.name}' not found in {path.parent}")
    try:
        tree = ast.parse(path.read_bytes(), str(path))
    except (SyntaxError, ValueError) as exc:
        raise InvalidArgument(f"{path.name} is not valid Python: {exc}") from exc
    names = _top_level_names(tree)
    if MODEL_CLASS not in names and TRITON_MODEL_CLASS not in names:
        raise InvalidArgument(
            f"{path.name} defines no class '{MODEL_CLASS}' (nor Triton's '{TRITON_MODEL_CLASS}')"
        )


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def import_model(path: Path, label: str) -> tuple[str, ModelFactory]:
    """Import `path` under a fresh module name; returns that name and the model factory.

    Triton's `triton_python_backend_utils` is importable only while the file is executed.
    """
    module_name = f"inferd_model_{re.sub(r'[^0-9A-Za-z_]', '_', label)}_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InvalidArgument(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickle look classes up by module
    sys.modules[TRITON_UTILS_MODULE] = triton_utils
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise InvalidArgument(f"importing {path.name} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.modules.pop(TRITON_UTILS_MODULE, None)
    model_class = getattr(module, MODEL_CLASS, None)
    if model_class is not None:
        return module_name, model_class
    triton_class = getattr(module, TRITON_MODEL_CLASS, None)
    if triton_class is None:
        del sys.modules[module_name]
        raise InvalidArgument(f"{path.name} defines no class '{MODEL_CLASS}'")
    return module_name, lambda: TritonModelAdapter(triton_class())


def forget_model(module_name: str) -> None:
    sys.modules.pop(module_name, None)
