"""The three model formats the backend reads, and what each tells about its `forward`.

- TorchScript (`model.pt`): `torch.jit.load`; argument names from `forward.schema`.
- `torch.export` archive (`model.pt2`): `torch.export.load(...).module()`; argument names,
  dtypes and shapes from the exported signature.
- Eager (`model.py`): a file defining `build_model() -> torch.nn.Module`; when `model.pth`
  lies next to it, that state dict is loaded into the built module. Argument names from
  `inspect.signature(module.forward)`.
"""

from __future__ import annotations

import enum
import importlib.util
import inspect
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inferd.backends.autocomplete import ModelTensor
from inferd.backends.pytorch.tensors import config_type
from inferd.core.errors import InvalidArgument
from inferd.core.model_config import ModelConfig

if TYPE_CHECKING:
    import torch

WEIGHTS_FILENAME = "model.pth"


class ModelFormat(enum.Enum):
    TORCHSCRIPT = "TorchScript"
    EXPORTED = "torch.export archive"
    EAGER = "model.py"


_FORMAT_BY_SUFFIX = {
    ".pt": ModelFormat.TORCHSCRIPT,
    ".pt2": ModelFormat.EXPORTED,
    ".py": ModelFormat.EAGER,
}
# Looked for in this order when the config names no `default_model_filename`.
DEFAULT_FILENAMES = ("model.pt", "model.pt2", "model.py")


@dataclass(frozen=True, slots=True)
class ModelSource:
    format: ModelFormat
    path: Path


@dataclass(frozen=True, slots=True)
class LoadedModule:
    """A module on one device, with `forward`'s argument names (None when unknown) and whether
    they may be passed by keyword."""

    module: Any
    arguments: list[str] | None
    by_keyword: bool


def find_source(config: ModelConfig, version_path: Path) -> ModelSource:
    names = (config.default_model_filename,) if config.default_model_filename else DEFAULT_FILENAMES
    for name in names:
        path = version_path / name
        if path.is_file():
            model_format = _FORMAT_BY_SUFFIX.get(path.suffix)
            if model_format is None:
                raise InvalidArgument(
                    f"'{name}': the PyTorch backend reads .pt (TorchScript), .pt2 "
                    "(torch.export) or .py (build_model) files"
                )
            return ModelSource(model_format, path)
    raise InvalidArgument(f"none of {list(names)} found in version folder '{version_path}'")


def load_module(source: ModelSource, device: torch.device) -> LoadedModule:
    """A fresh module from `source` on `device`; `InvalidArgument` when the file is unusable."""
    try:
        if source.format is ModelFormat.TORCHSCRIPT:
            return _load_torchscript(source.path, device)
        if source.format is ModelFormat.EXPORTED:
            return _load_exported(source.path, device)
        return _load_eager(source.path, device)
    except InvalidArgument:
        raise
    except Exception as exc:
        raise InvalidArgument(
            f"cannot load {source.format.value} '{source.path.name}': {exc}"
        ) from exc


def _load_torchscript(path: Path, device: torch.device) -> LoadedModule:
    import torch

    with warnings.catch_warnings():
        # torch 2.13 deprecates TorchScript for torch.export; the format is still Triton's, and
        # the docs say so once rather than every load's log.
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(path), map_location=device)  # type: ignore[no-untyped-call]
    module = loaded.eval()
    arguments = [argument.name for argument in module.forward.schema.arguments[1:]]  # not self
    return LoadedModule(module, arguments, by_keyword=True)


def load_exported_program(path: Path) -> Any:
    import torch

    with warnings.catch_warnings():
        # torch 2.11's loader builds its weights from read-only bytes and warns about its own
        # call, once per process, into the server's log; later releases do not.
        warnings.filterwarnings("ignore", "The given buffer is not writable", UserWarning)
        program = torch.export.load(str(path))
    if program.call_spec.in_spec.child(1).context:
        raise InvalidArgument(
            f"'{path.name}' was exported with keyword inputs; export with positional args only"
        )
    return program


def _load_exported(path: Path, device: torch.device) -> LoadedModule:
    program = load_exported_program(path)
    if device.type != "cpu":
        from torch.export.passes import move_to_device_pass

        program = move_to_device_pass(program, device)
    # An exported module keeps the mode it was exported in (it refuses .eval()).
    return LoadedModule(program.module(), input_names(program), by_keyword=False)


def input_names(program: Any) -> list[str]:
    """`forward`'s argument names as written: the graph's own input names are sanitized
    (`INPUT_STATE` becomes `input_state`), the recorded call signature keeps them."""
    graph_names = list(program.graph_signature.user_inputs)
    signature = program.module_call_graph[0].signature if program.module_call_graph else None
    names = getattr(signature, "forward_arg_names", None)
    return list(names) if names and len(names) == len(graph_names) else graph_names


def _load_eager(path: Path, device: torch.device) -> LoadedModule:
    import torch

    spec = importlib.util.spec_from_file_location(f"inferd_pytorch_model_{id(path)}", path)
    if spec is None or spec.loader is None:
        raise InvalidArgument(f"cannot import '{path}'")
    code = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(code)
    build = getattr(code, "build_model", None)
    if not callable(build):
        raise InvalidArgument(f"'{path.name}' defines no build_model() function")
    module = build()
    if not isinstance(module, torch.nn.Module):
        raise InvalidArgument(
            f"build_model() in '{path.name}' returned {type(module).__name__}, not a "
            "torch.nn.Module"
        )
    weights = path.with_name(WEIGHTS_FILENAME)
    if weights.is_file():
        module.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
    module = module.to(device).eval()
    return LoadedModule(module, _signature_arguments(module), by_keyword=True)


def _signature_arguments(module: Any) -> list[str] | None:
    parameters = inspect.signature(module.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return None
    return [p.name for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD]


def exported_tensors(program: Any) -> tuple[list[ModelTensor], list[ModelTensor]]:
    """An exported program's inputs and outputs: names, dtypes, and shapes with dynamic axes
    as None. Outputs are named by a returned dict's keys, else OUTPUT__0, OUTPUT__1, ..."""
    nodes = {node.name: node for node in program.graph.nodes}
    signature = program.graph_signature
    inputs = [
        _model_tensor(name, nodes[node_name])
        for name, node_name in zip(input_names(program), signature.user_inputs, strict=True)
    ]
    out_spec = program.call_spec.out_spec
    if out_spec.is_leaf():
        names = ["OUTPUT__0"]
    elif all(child.is_leaf() for child in out_spec.children()):
        names = (
            [str(key) for key in out_spec.context]
            if out_spec.type is dict
            else [f"OUTPUT__{i}" for i in range(out_spec.num_children)]
        )
    else:
        raise InvalidArgument(
            "the exported program returns a nested structure; return a tensor, a tuple or list "
            "of tensors, or a dict of tensors"
        )
    outputs = [
        _model_tensor(name, nodes[node_name])
        for name, node_name in zip(names, signature.user_outputs, strict=True)
    ]
    return inputs, outputs


def _model_tensor(name: str, node: Any) -> ModelTensor:
    import torch

    value = node.meta.get("val")
    if not isinstance(value, torch.Tensor):
        raise InvalidArgument(f"'{name}' of the exported program is not a tensor ({value!r})")
    shape = tuple(d if isinstance(d, int) else None for d in value.shape)
    return ModelTensor(name, config_type(value.dtype), shape, str(value.dtype))
