"""The one table from inferd errors to gRPC status codes, looked up along the exception's MRO.

The codes follow Triton's `grpc_utils.cc`: UNSUPPORTED becomes UNIMPLEMENTED.
"""

from __future__ import annotations

import grpc

from inferd.core.errors import (
    AlreadyExists,
    Cancelled,
    InferdError,
    Internal,
    InvalidArgument,
    NotFound,
    Unavailable,
    Unsupported,
)

_STATUS_BY_ERROR: dict[type[InferdError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    Unsupported: grpc.StatusCode.UNIMPLEMENTED,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    Cancelled: grpc.StatusCode.CANCELLED,
    Internal: grpc.StatusCode.INTERNAL,
    InferdError: grpc.StatusCode.INTERNAL,
}


def grpc_status(error: InferdError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        status = _STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    return grpc.StatusCode.INTERNAL


# Status details travel in a trailer, percent-encoded (up to 3 bytes per UTF-8 byte), and gRPC
# clients drop a response whose metadata passes 16 KiB (8 KiB soft): an error that echoes a
# huge client string (a model name, a sequence id) would reach the client as RESOURCE_EXHAUSTED.
_MAX_DETAILS_BYTES = 2048


def status_details(message: str) -> str:
    """`message`, cut to what every gRPC client accepts as status details."""
    encoded = message.encode()
    if len(encoded) <= _MAX_DETAILS_BYTES:
        return message
    kept = encoded[:_MAX_DETAILS_BYTES].decode(errors="ignore")
    return f"{kept}... (truncated, {len(encoded)} bytes in all)"
