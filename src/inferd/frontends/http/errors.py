"""The one table from inferd errors to HTTP statuses, looked up along the exception's MRO.

As Triton's `HttpCodeFromError` (src/http_server.cc), UNSUPPORTED is 501 Not Implemented, the
HTTP side of gRPC's UNIMPLEMENTED; unlike it, ALREADY_EXISTS is 409 rather than 400, and a
`Host` outside `--allowed-hosts` is 421 Misdirected Request.
"""

from __future__ import annotations

from inferd.core.errors import (
    AlreadyExists,
    Cancelled,
    InferdError,
    Internal,
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
    Unavailable,
    Unsupported,
)
from inferd.frontends.http.hosts import ForeignHost
from inferd.frontends.restricted import Forbidden

_STATUS_BY_ERROR: dict[type[InferdError], int] = {
    PayloadTooLarge: 413,
    ForeignHost: 421,
    Forbidden: 403,
    InvalidArgument: 400,
    NotFound: 404,
    Unavailable: 503,
    Unsupported: 501,
    AlreadyExists: 409,
    Cancelled: 400,
    Internal: 500,
    InferdError: 500,
}


def http_status(error: InferdError) -> int:
    for cls in type(error).__mro__:
        status = _STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    return 500
