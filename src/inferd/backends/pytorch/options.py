"""The config `parameters` the PyTorch backend reads, parsed and checked once at load."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inferd.core.errors import InvalidArgument
from inferd.repository.config import string_parameter

_BOOLEANS = {"true": True, "false": False}


@dataclass(frozen=True, slots=True)
class TorchOptions:
    torch_compile: bool = False
    inference_mode: bool = True
    intra_op_thread_count: int | None = None

    @classmethod
    def from_config(cls, config: Any) -> TorchOptions:
        return cls(
            torch_compile=_bool(config, "torch_compile", default=False),
            inference_mode=_bool(config, "inference_mode", default=True),
            intra_op_thread_count=_positive_int(config, "intra_op_thread_count"),
        )


def _bool(config: Any, key: str, default: bool) -> bool:
    value = string_parameter(config, key)
    if value is None or value == "":
        return default
    flag = _BOOLEANS.get(value.strip().lower())
    if flag is None:
        raise InvalidArgument(f"parameter '{key}' must be 'true' or 'false', got '{value}'")
    return flag


def _positive_int(config: Any, key: str) -> int | None:
    value = string_parameter(config, key)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise InvalidArgument(f"parameter '{key}' must be a positive integer, got '{value}'")
    return number
