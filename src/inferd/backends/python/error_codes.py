"""An error code (inferd's, or one of Triton's integer codes a model uses) back to the typed
error each frontend maps to its status (HTTP 400 / gRPC INVALID_ARGUMENT, ...)."""

from __future__ import annotations

from inferd.core.errors import (
    AlreadyExists,
    Cancelled,
    ErrorCode,
    InferdError,
    InvalidArgument,
    ModelExecutionError,
    NotFound,
    Unavailable,
    Unsupported,
)

_ERRORS: dict[ErrorCode, type[InferdError]] = {
    ErrorCode.INVALID_ARG: InvalidArgument,
    ErrorCode.NOT_FOUND: NotFound,
    ErrorCode.UNAVAILABLE: Unavailable,
    ErrorCode.UNSUPPORTED: Unsupported,
    ErrorCode.ALREADY_EXISTS: AlreadyExists,
    ErrorCode.CANCELLED: Cancelled,
}

# `TRITONSERVER_Error_Code`'s values, in order: UNKNOWN = 0, INTERNAL = 1, ... CANCELLED = 7.
TRITON_CODES = (
    ErrorCode.UNKNOWN,
    ErrorCode.INTERNAL,
    ErrorCode.NOT_FOUND,
    ErrorCode.INVALID_ARG,
    ErrorCode.UNAVAILABLE,
    ErrorCode.UNSUPPORTED,
    ErrorCode.ALREADY_EXISTS,
    ErrorCode.CANCELLED,
)


def error_of(code: ErrorCode, message: str) -> InferdError:
    """The error for `code`; INTERNAL and UNKNOWN are the model's failure (500 / INTERNAL)."""
    return _ERRORS.get(code, ModelExecutionError)(message)


def triton_code(code: int) -> ErrorCode:
    """Triton's integer code as inferd's (an unknown value is UNKNOWN)."""
    return TRITON_CODES[code] if 0 <= code < len(TRITON_CODES) else ErrorCode.UNKNOWN


def triton_code_of(code: ErrorCode) -> int:
    return TRITON_CODES.index(code)
