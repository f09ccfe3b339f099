"""How tensor names map onto a module's `forward` arguments and its results.

The tensors are the config's inputs and outputs plus, for a `sequence_batching` model, what the
sequence batcher feeds (control inputs, then state inputs) and takes back (state outputs, after
the config's outputs), and the `batch_input` targets a ragged batch adds: the server passes and
reads them like any other tensor.

Inputs: names equal to `forward`'s argument names are passed by name (TorchScript, eager) or in
the signature's order (exported programs); otherwise, when every name follows Triton's
`<name>__<index>` convention (`INPUT__0`, `INPUT__1`, ...), each is passed at that position;
otherwise, as Triton falls back to, in config order (not for a model with sequence state).

Outputs: a `dict` result is read by key; a tuple or list by the name's `__<index>` suffix
(`OUTPUT__1` is element 1), or else by the output's position (config outputs, then state
outputs); a lone tensor is the first output.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inferd.core.config_checks import sequence_tensors
from inferd.core.errors import InvalidArgument, ModelExecutionError
from inferd.core.model_config import ModelConfig

if TYPE_CHECKING:
    import torch

_INDEXED = re.compile(r".+__(\d+)")


def _index(name: str) -> int | None:
    match = _INDEXED.fullmatch(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True, slots=True)
class CallPlan:
    positional: tuple[str, ...]
    keyword: tuple[str, ...]
    output_index: Mapping[str, int]

    def call(self, module: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
        return module(
            *(tensors[name] for name in self.positional),
            **{name: tensors[name] for name in self.keyword if name in tensors},
        )

    def outputs(self, result: Any, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """The requested outputs out of what `forward` returned."""
        import torch

        if isinstance(result, dict):
            missing = [name for name in names if name not in result]
            if missing:
                raise ModelExecutionError(
                    f"forward returned a dict with keys {sorted(result)}, without {missing}"
                )
            return {name: result[name] for name in names}
        items = (result,) if isinstance(result, torch.Tensor) else result
        if not isinstance(items, tuple | list):
            raise ModelExecutionError(
                f"forward returned {type(result).__name__}; expected a tensor, a tuple or list "
                "of tensors, or a dict of them"
            )
        picked = {}
        for name in names:
            index = self.output_index[name]
            if index >= len(items):
                raise ModelExecutionError(
                    f"output '{name}' is element {index} of forward's result, which has "
                    f"{len(items)}"
                )
            picked[name] = items[index]
        return picked


def plan_for(config: ModelConfig, arguments: Sequence[str] | None, by_keyword: bool) -> CallPlan:
    """The plan for a model config, given `forward`'s argument names (None when unknown, e.g.
    `*args`); raises `InvalidArgument` when the names fit neither convention."""
    fed, _ = sequence_tensors(config)
    batch_fed = [target for entry in config.batch_input for target in entry.target_name]
    inputs = list(dict.fromkeys([*(t.name for t in config.input), *fed, *batch_fed]))
    outputs = [
        *(t.name for t in config.output),
        *(state.output_name for state in config.sequence_batching.state),
    ]
    optional = {t.name for t in config.input if t.optional}
    # As in Triton, a model with sequence state must name its tensors by convention.
    in_config_order = not config.sequence_batching.state
    return _plan_call(
        inputs, optional, list(dict.fromkeys(outputs)), arguments, by_keyword, in_config_order
    )


def _plan_call(
    names: Sequence[str],
    optional: Collection[str],
    outputs: Sequence[str],
    arguments: Sequence[str] | None,
    by_keyword: bool,
    in_config_order: bool,
) -> CallPlan:
    """The plan for input `names` (of which `optional` may be absent) and output names;
    `in_config_order` allows names that fit no convention, passed in config order."""
    output_index = {
        name: index if (index := _index(name)) is not None else position
        for position, name in enumerate(outputs)
    }
    if arguments is not None and set(names) <= set(arguments):
        if by_keyword:
            return CallPlan((), tuple(names), output_index)
        missing = [a for a in arguments if a not in names]
        if missing:
            raise InvalidArgument(f"the config lacks inputs {missing} that forward takes")
        return CallPlan(tuple(arguments), (), output_index)
    indices = [_index(name) for name in names]
    if None in indices:
        known = f"forward's arguments {list(arguments)} or " if arguments is not None else ""
        convention = f"named after {known}Triton's <name>__<index> convention"
        if not in_config_order:
            raise InvalidArgument(
                f"inputs {list(names)} must be {convention} (INPUT__0, INPUT__1, ...) "
                "when the model keeps sequence state"
            )
        if arguments is not None and len(arguments) != len(names):
            raise InvalidArgument(
                f"inputs {list(names)} are not {convention}, so they are passed in config "
                f"order, but forward takes {len(arguments)} argument(s)"
            )
        # Triton's fallback: strict config ordering (input i is argument i).
        return _positional(names, list(names), optional, output_index)
    by_position = sorted(zip(indices, names, strict=True))
    if [index for index, _ in by_position] != list(range(len(names))):
        raise InvalidArgument(
            f"inputs {list(names)} must be numbered __0 to __{len(names) - 1}, one each"
        )
    return _positional(names, [name for _, name in by_position], optional, output_index)


def _positional(
    names: Sequence[str],
    ordered: list[str],
    optional: Collection[str],
    output_index: Mapping[str, int],
) -> CallPlan:
    positional_optional = [name for name in names if name in optional]
    if positional_optional:
        raise InvalidArgument(f"inputs {positional_optional} passed by position cannot be optional")
    return CallPlan(tuple(ordered), (), output_index)
