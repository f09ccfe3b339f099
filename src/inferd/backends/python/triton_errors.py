"""Triton's `pb_utils.TritonError` (an error with one of Triton's codes, returned in a response
or raised) and `pb_utils.TritonModelException` (a model's own failure), and what each means
to the client."""

from __future__ import annotations

from inferd.backends.python.error_codes import error_of, triton_code
from inferd.core.errors import InferdError


class TritonError(Exception):
    # `TRITONSERVER_Error_Code`'s values.
    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7

    def __init__(self, message: str, code: int = INTERNAL) -> None:
        super().__init__(message)
        self._message = message
        self._code = code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


class TritonModelException(Exception):
    """What Triton's models raise for a failure of their own (500 / INTERNAL)."""


def returned_error(error: TritonError) -> InferdError:
    """A response's error: its code decides the client's status, its message is the text."""
    return error_of(triton_code(error.code()), error.message())


def raised_error(error: TritonError) -> InferdError:
    """A `TritonError` raised by `execute`: as returned, the message naming the exception."""
    return error_of(triton_code(error.code()), f"{type(error).__name__}: {error.message()}")
