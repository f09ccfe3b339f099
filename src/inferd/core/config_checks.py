"""Checks of a complete model config, done once when the model loads, and the tensors a
sequence config adds to the model's own."""

from __future__ import annotations

from inferd.core.errors import InvalidArgument
from inferd.core.model_config import ConfigTensor, ModelConfig, data_type_name, tensor_datatype


def validate_config(config: ModelConfig) -> None:
    """Raise `InvalidArgument` naming the first problem in a config about to be served."""
    if config.max_batch_size < 0:
        raise InvalidArgument("max_batch_size must be 0 or more")
    if not config.input:
        raise InvalidArgument("the config declares no inputs and none could be auto-completed")
    if not config.output:
        raise InvalidArgument("the config declares no outputs and none could be auto-completed")
    for kind, tensors in (("input", config.input), ("output", config.output)):
        names = [t.name for t in tensors]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InvalidArgument(f"{kind} names {duplicates} appear more than once")
        for tensor in tensors:
            _validate_tensor(kind, tensor)
    for preferred in config.dynamic_batching.preferred_batch_size:
        if not 0 < preferred <= config.max_batch_size:
            raise InvalidArgument(
                f"preferred_batch_size {preferred} must be between 1 and max_batch_size"
            )
    _check_response_cache(config)


def _check_response_cache(config: ModelConfig) -> None:
    """Triton's refusals, in its words: a cached response cannot replay a stream of them, nor
    stand in for a step of a sequence whose state the model keeps."""
    if not config.response_cache.enable:
        return
    if config.HasField("sequence_batching"):
        raise InvalidArgument(
            f"Response Cache does not currently support model {config.name} with sequence "
            "batching scheduler. Please disable the response cache."
        )
    if config.model_transaction_policy.decoupled:
        raise decoupled_cache_refusal(config.name)


def decoupled_cache_refusal(name: str) -> InvalidArgument:
    """Triton's refusal of a cached model that is decoupled (an ensemble is when a step is)."""
    return InvalidArgument(
        f"Response Cache does not currently support model {name} with 'decoupled' "
        "transaction policy. Please disable the response cache."
    )


def _validate_tensor(kind: str, tensor: ConfigTensor) -> None:
    if not tensor.name:
        raise InvalidArgument(f"an {kind} has no name")
    tensor_datatype(tensor.data_type)
    if any(d < -1 for d in tensor.dims):
        raise InvalidArgument(
            f"{kind} '{tensor.name}' has a dimension below -1: {list(tensor.dims)}"
        )
    if tensor.HasField("reshape") and any(d < -1 for d in tensor.reshape.shape):
        raise InvalidArgument(f"{kind} '{tensor.name}' has an invalid reshape")


def sequence_tensors(
    config: ModelConfig,
) -> tuple[dict[str, tuple[str, tuple[int, ...]]], set[str]]:
    """What the sequence batcher feeds the model (name -> TYPE_* name and dims without the
    batch axis: control inputs and state inputs) and the state outputs it takes back. Clients
    never send nor see these, so they are not config inputs or outputs."""
    fed: dict[str, tuple[str, tuple[int, ...]]] = {}
    sequence = config.sequence_batching
    for entry in sequence.control_input:
        for control in entry.control:
            if control.int32_false_true:
                fed[entry.name] = ("TYPE_INT32", (1,))
            elif control.fp32_false_true:
                fed[entry.name] = ("TYPE_FP32", (1,))
            elif control.bool_false_true:
                fed[entry.name] = ("TYPE_BOOL", (1,))
            else:
                fed[entry.name] = (data_type_name(control.data_type), (1,))
    for state in sequence.state:
        fed[state.input_name] = (data_type_name(state.data_type), tuple(state.dims))
    return fed, {state.output_name for state in sequence.state}
