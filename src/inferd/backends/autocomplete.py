"""Fill a partial config's inputs, outputs and batching from the tensors a model file declares.

Triton's rules, shared by every backend that can read its model's tensors: inputs and outputs
are filled only when the config lists none; `max_batch_size` is inferred (set to the server's
default) only when the config gives no tensors and no batch size and every tensor's first axis
is dynamic; tensor names the config gives must exist in the model. Sequence control and
state tensors (`sequence_batching`) are fed by the server, never by clients: they are left out
of the config's inputs and outputs, and checked against the model's tensors instead. So are
`batch_input` targets, and a ragged input (`allow_ragged_batch`) must be 1-D in the model, as
the batch reaches it flattened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from inferd.core.config_checks import sequence_tensors
from inferd.core.errors import InvalidArgument
from inferd.core.model_config import ConfigTensor, ModelConfig, data_type_value


@dataclass(frozen=True, slots=True)
class ModelTensor:
    """One input or output as the model file declares it, in the model config's terms."""

    name: str
    data_type: str | None  # config enum name (TYPE_FP32); None when the config has no such type
    shape: tuple[int | None, ...]  # None (or a negative size) for an axis of unknown size
    framework_type: str  # the framework's own name of the type, for error messages


def complete_tensors(
    config: ModelConfig,
    inputs: Sequence[ModelTensor],
    outputs: Sequence[ModelTensor],
    default_batch: int,
    model: str,
    defaulted: Sequence[ModelTensor] = (),
) -> None:
    """Complete `config` from a model's tensors; `model` names the model in errors
    ("the ONNX model"). `defaulted` are inputs the model has a default value for: the config
    may list them (never filled in), and a request may leave them out (they become optional)."""
    fed, taken = sequence_tensors(config)
    batch_fed = {target for entry in config.batch_input for target in entry.target_name}
    client_inputs = [t for t in inputs if t.name not in fed and t.name not in batch_fed]
    client_outputs = [t for t in outputs if t.name not in taken]
    fill_inputs, fill_outputs = not config.input, not config.output
    infer_batching = fill_inputs and fill_outputs and config.max_batch_size == 0
    if (
        infer_batching
        and default_batch > 0
        and all(_dynamic_first_axis(t.shape) for t in [*client_inputs, *client_outputs])
    ):
        config.max_batch_size = default_batch
    skip = 1 if config.max_batch_size > 0 else 0
    if fill_inputs:
        for tensor in client_inputs:
            _add_tensor(config.input.add(), tensor, skip)
    if fill_outputs:
        for tensor in client_outputs:
            _add_tensor(config.output.add(), tensor, skip)
    known_inputs = [t.name for t in [*client_inputs, *defaulted]]
    check_names("input", [t.name for t in config.input], known_inputs, model)
    with_default = {t.name for t in defaulted}
    for entry in config.input:
        if entry.name in with_default:
            entry.optional = True
    check_names("output", [t.name for t in config.output], [t.name for t in client_outputs], model)
    _check_ragged_tensors(config, inputs, batch_fed, model)
    if fed:
        states = {s.output_name: fed[s.input_name] for s in config.sequence_batching.state}
        _check_sequence_tensors("input", fed, inputs, skip, model)
        _check_sequence_tensors("output", states, outputs, skip, model)


def check_names(kind: str, configured: list[str], in_model: list[str], model: str) -> None:
    unknown = sorted(set(configured) - set(in_model))
    if unknown:
        raise InvalidArgument(
            f"config {kind} {unknown} not in {model}, whose {kind}s are {in_model}"
        )


def model_path(config: ModelConfig, version_path: Path, default_filename: str) -> Path:
    """The model file (or folder) of a version: the config's `default_model_filename`, else the
    backend's."""
    return version_path / (config.default_model_filename or default_filename)


def existing_model_file(config: ModelConfig, version_path: Path, default_filename: str) -> Path:
    """The model file a version folder must hold (see `model_path`)."""
    model_file = model_path(config, version_path, default_filename)
    if not model_file.is_file():
        raise InvalidArgument(f"model file '{model_file.name}' not found in version folder")
    return model_file


def name_backend(config: ModelConfig, backend: str, platform: str | None) -> None:
    """Fill the `backend` and `platform` (where the model has one) a config leaves out."""
    if not config.backend:
        config.backend = backend
    if not config.platform and platform is not None:
        config.platform = platform


def _check_sequence_tensors(
    kind: str,
    expected: dict[str, tuple[str, tuple[int, ...]]],
    tensors: Sequence[ModelTensor],
    skip: int,
    model: str,
) -> None:
    by_name = {t.name: t for t in tensors}
    for name, (data_type, dims) in expected.items():
        tensor = by_name.get(name)
        if tensor is None:
            raise InvalidArgument(
                f"sequence_batching names {kind} '{name}', which {model} lacks; "
                f"its {kind}s are {list(by_name)}"
            )
        shape = tensor.shape[skip:]
        fits = len(shape) == len(dims) and all(
            m is None or m < 0 or d in (-1, m) for m, d in zip(shape, dims, strict=True)
        )
        if tensor.data_type != data_type or not fits:
            raise InvalidArgument(
                f"sequence_batching {kind} '{name}' is {data_type} {list(dims)}, but {model} "
                f"declares {tensor.framework_type} {list(tensor.shape)}"
            )


def _check_ragged_tensors(
    config: ModelConfig, inputs: Sequence[ModelTensor], batch_fed: set[str], model: str
) -> None:
    by_name = {t.name: t for t in inputs}
    missing = sorted(batch_fed - set(by_name))
    if missing:
        raise InvalidArgument(
            f"batch_input targets {missing} are not inputs of {model}, whose inputs are "
            f"{list(by_name)}"
        )
    if config.max_batch_size == 0:
        return
    for entry in config.input:
        tensor = by_name.get(entry.name)
        if entry.allow_ragged_batch and tensor is not None and not _flat(tensor.shape):
            raise InvalidArgument(
                f"input '{entry.name}' sets allow_ragged_batch, so the batch reaches the model "
                f"flattened into one 1-D tensor, but {model} declares it "
                f"{[-1 if d is None else d for d in tensor.shape]}: it must take shape [-1]"
            )


def _flat(shape: tuple[int | None, ...]) -> bool:
    return len(shape) == 1 and _dynamic_first_axis(shape)


def _dynamic_first_axis(shape: tuple[int | None, ...]) -> bool:
    return len(shape) > 0 and (shape[0] is None or shape[0] < 0)


def _add_tensor(entry: ConfigTensor, tensor: ModelTensor, skip: int) -> None:
    if tensor.data_type is None:
        raise InvalidArgument(f"'{tensor.name}' has unsupported type {tensor.framework_type}")
    entry.name = tensor.name
    entry.data_type = data_type_value(tensor.data_type)
    entry.dims.extend(-1 if d is None or d < 0 else d for d in tensor.shape[skip:])
