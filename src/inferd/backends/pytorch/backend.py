"""The PyTorch backend's metadata, config auto-completion and loading.

Auto-completion: a `torch.export` archive declares its tensors, so inputs, outputs and
`max_batch_size` are filled as for ONNX. TorchScript files and eager modules record only
`forward`'s argument names, so their config must declare inputs and outputs; those names are
checked against `forward` here.
"""

from __future__ import annotations

from pathlib import Path

from inferd.backends.autocomplete import complete_tensors, name_backend
from inferd.backends.pytorch.calling import plan_for
from inferd.backends.pytorch.formats import (
    ModelFormat,
    ModelSource,
    exported_tensors,
    find_source,
    load_exported_program,
    load_module,
)
from inferd.backends.pytorch.model import PyTorchModel
from inferd.backends.pytorch.options import TorchOptions
from inferd.core.errors import InvalidArgument
from inferd.core.model_config import ModelConfig, config_tensors, data_type_name

# Files that mark a version folder as PyTorch's without a config saying so; model.py belongs to
# the Python backend unless the config names `backend: "pytorch"`.
_MARKER_FILES = ("model.pt", "model.pt2")


class PyTorchBackend:
    name = "pytorch"
    platforms = ("pytorch_libtorch", "pytorch_torchscript")
    default_model_filename = "model.pt"
    supports_optional_inputs = True  # passed by keyword, so a left-out one is not passed
    supports_ragged = True  # see docs/ragged_batching.md

    def gpu_available(self) -> bool:
        import torch

        return torch.cuda.is_available()

    def matches(self, version_path: Path) -> bool:
        return any((version_path / name).is_file() for name in _MARKER_FILES)

    def complete_config(
        self, config: ModelConfig, version_path: Path, default_max_batch_size: int
    ) -> None:
        source = find_source(config, version_path)
        torchscript = source.format is ModelFormat.TORCHSCRIPT
        name_backend(config, self.name, self.platforms[0] if torchscript else None)
        if source.format is ModelFormat.EXPORTED:
            try:
                program = load_exported_program(source.path)
            except InvalidArgument:
                raise
            except Exception as exc:
                raise InvalidArgument(f"cannot read '{source.path.name}': {exc}") from exc
            inputs, outputs = exported_tensors(program)
            complete_tensors(
                config, inputs, outputs, default_max_batch_size, "the exported program"
            )
            return
        _check_declared_tensors(config, source)

    def load(self, config: ModelConfig, version_path: Path) -> PyTorchModel:
        options = TorchOptions.from_config(config)
        strings = [
            t.name for t in config_tensors(config) if data_type_name(t.data_type) == "TYPE_STRING"
        ]
        if strings:
            raise InvalidArgument(
                f"{strings}: torch has no string tensors, so TYPE_STRING is refused"
            )
        source = find_source(config, version_path)
        if options.torch_compile and source.format is ModelFormat.TORCHSCRIPT:
            raise InvalidArgument(
                "torch_compile cannot compile TorchScript; serve a model.pt2 or model.py instead"
            )
        if options.intra_op_thread_count is not None:
            import torch

            torch.set_num_threads(options.intra_op_thread_count)  # for the whole process
        return PyTorchModel(source, config, options)


def _check_declared_tensors(config: ModelConfig, source: ModelSource) -> None:
    """TorchScript and eager modules carry no dtypes or shapes: the config must give them."""
    import torch

    loaded = load_module(source, torch.device("cpu"))
    if not config.input or not config.output:
        arguments = loaded.arguments if loaded.arguments is not None else "INPUT__0, INPUT__1, ..."
        raise InvalidArgument(
            f"{source.format.value} '{source.path.name}' records no tensor dtypes or shapes: "
            f"the config must declare every input (named {arguments}) and every output "
            "(OUTPUT__0, OUTPUT__1, ... or the keys of the dict forward returns), each with "
            "data_type and dims"
        )
    plan_for(config, loaded.arguments, loaded.by_keyword)
