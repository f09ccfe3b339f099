"""OpenAI's error object, `{"error": {"message", "type", "param", "code"}}`, for an inferd
error, with the status the HTTP frontend's table gives it."""

from __future__ import annotations

from typing import Any

from inferd.core.errors import InferdError, InvalidArgument, NotFound
from inferd.frontends.http.errors import http_status
from inferd.frontends.openai.requests import BadField

_TYPES = {400: "invalid_request_error", 404: "invalid_request_error", 413: "invalid_request_error"}


class MethodNotAllowed(InvalidArgument):
    pass


class NoRoute(NotFound):
    """A path that is no /v1 route (any other NotFound is a model's)."""


def error_status(error: InferdError) -> int:
    return 405 if isinstance(error, MethodNotAllowed) else http_status(error)


def error_document(error: InferdError) -> dict[str, Any]:
    status = error_status(error)
    found_no_model = isinstance(error, NotFound) and not isinstance(error, NoRoute)
    code = "model_not_found" if found_no_model else None
    param = error.param if isinstance(error, BadField) else None
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": error.message, "type": kind, "param": param, "code": code}}
