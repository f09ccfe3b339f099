"""A sequence model's settings, read and checked once from its `sequence_batching` config.

Triton's fields: the strategy (`direct`, the default, or `oldest`), the idle timeout, the
control inputs (START, END, READY as boolean-like tensors; CORRID carrying the sequence id)
and the implicit state the server keeps between a sequence's requests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferd.core.datatypes import BYTES, numpy_dtype
from inferd.core.errors import InvalidArgument, Unsupported
from inferd.core.model_config import (
    ModelConfig,
    ModelSequenceBatching,
    int_parameter,
    tensor_datatype,
)
from inferd.core.types import Array
from inferd.scheduling.admission import admission_settings
from inferd.scheduling.dynamic_settings import BatchingSettings

# inferd's limit on sequences waiting for a slot (Triton has none), in the model's `parameters`.
MAX_BACKLOG_PARAMETER = "inferd.max_sequence_backlog"
# Triton's default when max_sequence_idle_microseconds is 0 (unset): one second.
DEFAULT_IDLE_NS = 1_000_000_000

START, READY, END, CORRID = (
    "CONTROL_SEQUENCE_START",
    "CONTROL_SEQUENCE_READY",
    "CONTROL_SEQUENCE_END",
    "CONTROL_SEQUENCE_CORRID",
)
_CORRID_TYPES = ("UINT64", "INT64", "UINT32", "INT32", BYTES)
# The fields that give a boolean control's [false, true] values, and the tensor type of each.
_FALSE_TRUE_TYPES: dict[str, np.dtype[Any]] = {
    "int32_false_true": np.dtype(np.int32),
    "fp32_false_true": np.dtype(np.float32),
    "bool_false_true": np.dtype(np.bool_),
}

Scalar = bool | int | float


@dataclass(frozen=True, slots=True)
class Control:
    """One control input: the tensor `name` carries `kind` as `dtype`.

    Boolean kinds use `false`/`true`; CORRID carries the sequence id itself.
    """

    name: str
    kind: str
    dtype: np.dtype[Any]
    false: Scalar | None = None
    true: Scalar | None = None


@dataclass(frozen=True, slots=True)
class StateSpec:
    """Implicit state: fed as `input_name`, read back from `output_name`; `initial` has no
    batch axis."""

    input_name: str
    output_name: str
    dtype: np.dtype[Any]
    initial: Array
    grows: bool = False  # its dims hold -1: its shape may change from step to step


@dataclass(frozen=True, slots=True)
class SequenceSettings:
    strategy: str  # "direct" or "oldest"
    max_batch_size: int
    slots_per_instance: int
    idle_ns: int
    max_queue_delay_ns: int = 0
    minimum_slot_utilization: float = 0.0  # direct only
    preferred_batch_sizes: tuple[int, ...] = ()  # oldest only
    controls: tuple[Control, ...] = ()
    states: tuple[StateSpec, ...] = ()
    string_ids: bool | None = None  # what CORRID declares; None: both kinds of id accepted
    max_backlog: int = 0  # sequences waiting for a slot beyond this get Unavailable; 0: no limit
    iterative: bool = False  # iterative_sequence: continuous batching (`iterative.py`)
    # An iterative model's backlog: priorities and queue policy (`admission.py`).
    admission: BatchingSettings | None = None

    @property
    def batched(self) -> bool:
        return self.max_batch_size > 0

    @property
    def state_outputs(self) -> tuple[str, ...]:
        return tuple(state.output_name for state in self.states)

    @classmethod
    def from_config(cls, config: ModelConfig, model_dir: Path) -> SequenceSettings:
        """Settings of a complete config; raises `InvalidArgument` / `Unsupported` at load."""
        sequence = config.sequence_batching
        controls = _controls(config)
        _check_names(config, controls, sequence.state)
        states = tuple(_state(state, model_dir) for state in sequence.state)
        corrid = next((c for c in controls if c.kind == CORRID), None)
        idle_us = int(sequence.max_sequence_idle_microseconds)
        slots = max(1, int(config.max_batch_size))
        if sequence.WhichOneof("strategy_choice") == "oldest":
            oldest = sequence.oldest
            strategy = "oldest"
            slots_per_instance = int(oldest.max_candidate_sequences) or slots
            delay_us = int(oldest.max_queue_delay_microseconds)
            utilization = 0.0
            preferred = tuple(sorted(set(oldest.preferred_batch_size)))
            for size in preferred:
                if not 0 < size <= slots:
                    raise InvalidArgument(
                        f"sequence_batching.oldest.preferred_batch_size {size} must be "
                        "between 1 and max_batch_size"
                    )
        else:
            direct = sequence.direct
            strategy = "direct"
            slots_per_instance = slots
            utilization = float(direct.minimum_slot_utilization)
            if not 0.0 <= utilization <= 1.0:
                raise InvalidArgument(
                    f"sequence_batching.direct.minimum_slot_utilization {utilization} must be "
                    "between 0 and 1"
                )
            # As in Triton, the delay only matters once a minimum utilization is asked for.
            delay_us = int(direct.max_queue_delay_microseconds) if utilization else 0
            preferred = ()
        return cls(
            strategy=strategy,
            max_batch_size=int(config.max_batch_size),
            slots_per_instance=slots_per_instance,
            idle_ns=idle_us * 1000 if idle_us else DEFAULT_IDLE_NS,
            max_queue_delay_ns=delay_us * 1000,
            minimum_slot_utilization=utilization,
            preferred_batch_sizes=preferred,
            controls=controls,
            states=states,
            string_ids=None if corrid is None else corrid.dtype.kind == "O",
            max_backlog=_max_backlog(config),
            iterative=bool(sequence.iterative_sequence),
            admission=admission_settings(config) if sequence.iterative_sequence else None,
        )


def _max_backlog(config: ModelConfig) -> int:
    return int_parameter(config, MAX_BACKLOG_PARAMETER, minimum=0) or 0


def _controls(config: ModelConfig) -> tuple[Control, ...]:
    controls: list[Control] = []
    for entry in config.sequence_batching.control_input:
        if not entry.name:
            raise InvalidArgument("a sequence_batching control_input has no name")
        if len(entry.control) != 1:
            raise InvalidArgument(
                f"sequence_batching control_input '{entry.name}' has {len(entry.control)} "
                "controls; one tensor carries exactly one"
            )
        controls.append(_control(entry.name, entry.control[0]))
    kinds = [c.kind for c in controls]
    repeated = sorted({k for k in kinds if kinds.count(k) > 1})
    if repeated:
        raise InvalidArgument(f"sequence_batching specifies more than one tensor for {repeated}")
    return tuple(controls)


def _control(name: str, control: ModelSequenceBatching.Control) -> Control:
    try:
        kind = ModelSequenceBatching.Control.Kind.Name(control.kind)
    except ValueError:
        raise InvalidArgument(
            f"control_input '{name}' has unknown control kind {control.kind}"
        ) from None
    candidates: tuple[tuple[str, Sequence[Scalar]], ...] = (
        ("int32_false_true", control.int32_false_true),
        ("fp32_false_true", control.fp32_false_true),
        ("bool_false_true", control.bool_false_true),
    )
    given = [(field, list(values)) for field, values in candidates if values]
    if kind == CORRID:
        datatype = "" if given else tensor_datatype(control.data_type)
        if datatype not in _CORRID_TYPES:
            raise InvalidArgument(
                f"control_input '{name}' ({kind}) must set only data_type, one of "
                "TYPE_UINT64, TYPE_INT64, TYPE_UINT32, TYPE_INT32, TYPE_STRING"
            )
        return Control(name, kind, numpy_dtype(datatype))
    if len(given) != 1 or control.data_type:
        raise InvalidArgument(
            f"control_input '{name}' ({kind}) must set exactly one of int32_false_true, "
            "fp32_false_true, bool_false_true"
        )
    field, values = given[0]
    if len(values) != 2:
        raise InvalidArgument(f"control_input '{name}': {field} must hold [false, true]")
    return Control(name, kind, _FALSE_TRUE_TYPES[field], values[0], values[1])


def _check_names(
    config: ModelConfig,
    controls: tuple[Control, ...],
    states: Iterable[ModelSequenceBatching.State],
) -> None:
    inputs = {t.name for t in config.input}
    outputs = {t.name for t in config.output}
    fed = [c.name for c in controls] + [s.input_name for s in states]
    clashes = sorted(inputs.intersection(fed))
    if clashes:
        raise InvalidArgument(
            f"sequence control or state inputs {clashes} are also config inputs; the server "
            "feeds them, so they must not be listed under input"
        )
    repeated = sorted({n for n in fed if fed.count(n) > 1})
    if repeated:
        raise InvalidArgument(f"sequence control/state input names {repeated} are used twice")
    state_outputs = [s.output_name for s in states]
    clashes = sorted(outputs.intersection(state_outputs))
    if clashes or len(set(state_outputs)) != len(state_outputs):
        raise InvalidArgument(
            f"state output names must be unique and not config outputs: {state_outputs}"
        )


def _state(state: ModelSequenceBatching.State, model_dir: Path) -> StateSpec:
    name = state.input_name
    if not name or not state.output_name:
        raise InvalidArgument("a sequence_batching state needs input_name and output_name")
    datatype = tensor_datatype(state.data_type)
    dtype = numpy_dtype(datatype)
    dims = tuple(int(d) for d in state.dims)
    if not dims or any(d < -1 or d == 0 for d in dims):
        raise InvalidArgument(f"state '{name}' must have dims, each positive or -1: {list(dims)}")
    shape = dims
    grows = -1 in dims
    if len(state.initial_state) > 1:
        raise InvalidArgument(f"state '{name}' has more than one initial_state")
    initial = state.initial_state[0] if state.initial_state else None
    if initial is not None:
        if initial.data_type != state.data_type:
            raise InvalidArgument(f"initial_state of state '{name}' has another data_type")
        shape = tuple(int(d) for d in initial.dims)
        if len(shape) != len(dims) or any(
            s < 1 or d not in (-1, s) for s, d in zip(shape, dims, strict=False)
        ):
            raise InvalidArgument(
                f"initial_state dims {list(shape)} of state '{name}' do not fit its dims "
                f"{list(dims)}"
            )
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"state '{name}' has variable dims: give initial_state dims")
    if initial is not None and initial.WhichOneof("state_data") == "data_file":
        if datatype == BYTES:
            raise Unsupported(f"state '{name}': a BYTES initial_state cannot come from a data_file")
        data = _read_initial(model_dir, initial, shape)
        return StateSpec(name, state.output_name, dtype, data, grows)
    # A BYTES state starts as empty elements, as Triton's zero_data does for strings.
    zeros = np.full(shape, b"", dtype=dtype) if datatype == BYTES else np.zeros(shape, dtype)
    return StateSpec(name, state.output_name, dtype, zeros, grows)


def _read_initial(
    model_dir: Path, initial: ModelSequenceBatching.InitialState, shape: tuple[int, ...]
) -> Array:
    """Triton reads `data_file` from the model folder's `initial_state/`, row-major, raw."""
    path = model_dir / "initial_state" / initial.data_file
    dtype = numpy_dtype(tensor_datatype(initial.data_type))
    try:
        data = np.fromfile(path, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"cannot read initial_state data_file '{path.name}': {exc}") from exc
    if data.size != int(np.prod(shape)):
        raise InvalidArgument(
            f"initial_state data_file '{path.name}' holds {data.size} values, "
            f"dims {list(shape)} need {int(np.prod(shape))}"
        )
    return data.reshape(shape)
