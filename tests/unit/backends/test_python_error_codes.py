"""Triton's error codes as inferd's typed errors."""

from __future__ import annotations

import pytest

from inferd.backends.python.triton_errors import TritonError, raised_error, returned_error
from inferd.core.errors import (
    AlreadyExists,
    Cancelled,
    InferdError,
    InvalidArgument,
    ModelExecutionError,
    NotFound,
    Unavailable,
    Unsupported,
)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (TritonError.UNKNOWN, ModelExecutionError),
        (TritonError.INTERNAL, ModelExecutionError),
        (TritonError.NOT_FOUND, NotFound),
        (TritonError.INVALID_ARG, InvalidArgument),
        (TritonError.UNAVAILABLE, Unavailable),
        (TritonError.UNSUPPORTED, Unsupported),
        (TritonError.ALREADY_EXISTS, AlreadyExists),
        (TritonError.CANCELLED, Cancelled),
        (99, ModelExecutionError),
    ],
)
def test_each_code_is_its_error(code: int, expected: type[InferdError]) -> None:
    returned = returned_error(TritonError("no", code))
    assert type(returned) is expected
    assert returned.message == "no"
    raised = raised_error(TritonError("no", code))
    assert type(raised) is expected
    assert raised.message == "TritonError: no"
