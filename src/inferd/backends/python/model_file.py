"""Find and import the user's `model.py`: each load gets its own module name, so two models
(or two versions of one) never share module state, and unloading forgets the module. Also runs
the model class's `auto_complete_config` hook, Triton's way of filling a config from code."""

from __future__ import annotations

import ast
import importlib.util
import itertools
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from inferd.backends.python import triton_utils
from inferd.backends.python.triton import TritonModelAdapter
from inferd.core.errors import InvalidArgument

MODEL_CLASS = "InferdModel"
TRITON_MODEL_CLASS = "TritonPythonModel"
TRITON_UTILS_MODULE = "triton_python_backend_utils"
AUTO_COMPLETE_HOOK = "auto_complete_config"
EXECUTE = "execute"

_counter = itertools.count()

ModelFactory = Callable[[], Any]  # a new model object: initialize / execute / finalize


def check_model_file(path: Path) -> bool:
    """Refuse a missing file or one defining neither model class, without running it; returns
    whether the model class may have an `auto_complete_config` hook, which only importing the
    file can confirm (False when the file's `class` statement shows it has none)."""
    if not path.is_file():
        raise InvalidArgument(f"model file '{path.name}' not found in {path.parent}")
    try:
        tree = ast.parse(path.read_bytes(), str(path))
    except (SyntaxError, ValueError) as exc:
        raise InvalidArgument(f"{path.name} is not valid Python: {exc}") from exc
    names = _top_level_names(tree.body)
    if MODEL_CLASS not in names and TRITON_MODEL_CLASS not in names:
        raise InvalidArgument(
            f"{path.name} defines no class '{MODEL_CLASS}' (nor Triton's '{TRITON_MODEL_CLASS}')"
        )
    used = MODEL_CLASS if MODEL_CLASS in names else TRITON_MODEL_CLASS
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == used]
    if not classes or classes[-1].bases:  # imported, assigned or inheriting: it may have one
        return True
    return AUTO_COMPLETE_HOOK in _top_level_names(classes[-1].body)


def _top_level_names(body: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for node in body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def import_model(path: Path, label: str) -> tuple[str, ModelFactory]:
    """Import `path` under a fresh module name; returns that name and the model factory."""
    module_name, model_class, triton = _import_model_class(path, label)
    if triton:
        return module_name, lambda: TritonModelAdapter(model_class())
    return module_name, model_class


def auto_complete(path: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """`config` (JSON form) as the model class's `auto_complete_config` hook completes it, or
    None when the class has no hook. The hook is called on the class; no model object is made."""
    module_name, model_class, _ = _import_model_class(path, "auto_complete")
    try:
        hook = getattr(model_class, AUTO_COMPLETE_HOOK, None)
        if hook is None:
            return None
        given = triton_utils.ModelConfig(config)
        try:
            returned = hook(given)
        except Exception as exc:
            raise InvalidArgument(
                f"{AUTO_COMPLETE_HOOK} of {path.name} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if returned is not None and not isinstance(returned, triton_utils.ModelConfig):
            raise InvalidArgument(
                f"{AUTO_COMPLETE_HOOK} of {path.name} returned {type(returned).__name__}, not "
                "the config object it was given"
            )
        return (returned or given).as_dict()
    finally:
        forget_model(module_name)


def _import_model_class(path: Path, label: str) -> tuple[str, Any, bool]:
    """The fresh module's name, the model class, and whether it is Triton's."""
    module_name, module = _import(path, label)
    triton = getattr(module, MODEL_CLASS, None) is None
    used = TRITON_MODEL_CLASS if triton else MODEL_CLASS
    model_class = getattr(module, used, None)
    if model_class is None:
        del sys.modules[module_name]
        raise InvalidArgument(f"{path.name} defines no class '{MODEL_CLASS}'")
    # Checked here, at load, so that a class with only `auto_complete_config` is refused
    # instead of loading READY and failing every request.
    if not callable(getattr(model_class, EXECUTE, None)):
        del sys.modules[module_name]
        raise InvalidArgument(f"class '{used}' in {path.name} defines no '{EXECUTE}' method")
    return module_name, model_class, triton


def _import(path: Path, label: str) -> tuple[str, ModuleType]:
    """Execute `path` as a module of a fresh name.

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
    return module_name, module


def forget_model(module_name: str) -> None:
    sys.modules.pop(module_name, None)
