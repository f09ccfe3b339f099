"""One error hierarchy for the whole server, independent of any wire protocol.

    InferdError(code, message)
    ├── InvalidArgument        INVALID_ARG      bad shape, dtype, name, size, malformed payload
    │   └── PayloadTooLarge    INVALID_ARG      a body beyond the configured limit
    ├── NotFound               NOT_FOUND        unknown model, version, input or output
    ├── Unavailable            UNAVAILABLE      model not ready, queue full, server stopping
    │   └── InstanceLost       UNAVAILABLE      an instance's process or machine went away
    ├── Unsupported            UNSUPPORTED      a feature this server or backend does not offer
    │   └── DecoupledModel     UNSUPPORTED      a unary infer of a decoupled model
    ├── AlreadyExists          ALREADY_EXISTS
    ├── Internal               INTERNAL         a fault inside the server
    │   └── ModelExecutionError INTERNAL        the model itself raised while executing a batch
    └── Cancelled              CANCELLED

Frontends map `ErrorCode` to their statuses in one table each; nothing here knows HTTP or gRPC.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.Enum):
    """Triton's eight error codes."""

    UNKNOWN = "UNKNOWN"
    INTERNAL = "INTERNAL"
    NOT_FOUND = "NOT_FOUND"
    INVALID_ARG = "INVALID_ARG"
    UNAVAILABLE = "UNAVAILABLE"
    UNSUPPORTED = "UNSUPPORTED"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    CANCELLED = "CANCELLED"


class InferdError(Exception):
    """Base of every error inferd reports to a client."""

    code: ErrorCode = ErrorCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(InferdError):
    code = ErrorCode.INVALID_ARG


class PayloadTooLarge(InvalidArgument):
    pass


class NotFound(InferdError):
    code = ErrorCode.NOT_FOUND


class Unavailable(InferdError):
    code = ErrorCode.UNAVAILABLE


class InstanceLost(Unavailable):
    """An instance stopped while running a batch (its process or machine went away), and
    what it held went with it: a sequence scheduler ends the sequences it had there."""


class Unsupported(InferdError):
    code = ErrorCode.UNSUPPORTED


class DecoupledModel(Unsupported):
    """A unary infer asked of a model that answers with a stream; each frontend words it as
    Triton does for its endpoint."""


class AlreadyExists(InferdError):
    code = ErrorCode.ALREADY_EXISTS


class Internal(InferdError):
    code = ErrorCode.INTERNAL


class ModelExecutionError(Internal):
    """The backend raised while running a batch: this request failed, the server did not."""


class Cancelled(InferdError):
    code = ErrorCode.CANCELLED


def unknown_model(name: str, version: str = "") -> str:
    """Triton's wording for a model (or version) that is not served: clients match its prefix."""
    which = f"'{name}' version {version}" if version else f"'{name}'"
    return f"Request for unknown model: {which} is not found"
