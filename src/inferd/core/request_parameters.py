"""The request parameters that Triton reserves (`sequence_id`, `sequence_start`, `sequence_end`,
`priority`, `timeout`): each of one kind, refused otherwise for every request, whatever its
model's scheduler, as Triton's frontends refuse them. What a value means (a priority level, a
sequence id in range) is for the scheduler that reads it."""

from __future__ import annotations

from inferd.core.errors import InvalidArgument
from inferd.core.types import Parameters

_FLAGS = ("sequence_start", "sequence_end")
_COUNTS = ("priority", "timeout")


def non_negative_int(value: object, name: str) -> int:
    """`value` of the request parameter `name`, which must be an integer >= 0."""
    # bool is an int subclass; `"priority": true` is a client mistake, not priority 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(f"request parameter '{name}' must be a non-negative integer")
    return value


def check_reserved(parameters: Parameters) -> None:
    """Refuse a reserved parameter of the wrong kind (InvalidArgument)."""
    for name in _COUNTS:
        if name in parameters:
            non_negative_int(parameters[name], name)
    if "sequence_id" in parameters:
        key = parameters["sequence_id"]
        if isinstance(key, bool) or not isinstance(key, int | str):
            raise InvalidArgument("request parameter 'sequence_id' must be an integer or a string")
    for name in _FLAGS:
        if name in parameters and not isinstance(parameters[name], bool):
            raise InvalidArgument(f"request parameter '{name}' must be a boolean")
