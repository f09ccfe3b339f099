"""The HTTP side of the model repository extension's load and unload."""

from __future__ import annotations

from typing import Any

from inferd.core.errors import InvalidArgument, Unsupported
from inferd.frontends.http.codec import loads


def config_override(document: Any) -> dict[str, Any] | None:
    """The config a load request carries, as tritonclient sends it:
    `{"parameters": {"config": "<model config as a JSON string>"}}` (body and both optional)."""
    if document is None:
        return None
    if not isinstance(document, dict):
        raise InvalidArgument("the load request must be a JSON object")
    parameters = document.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidArgument("'parameters' of the load request must be an object")
    files = sorted(key for key in parameters if key.startswith("file:"))
    if files:
        raise Unsupported(f"loading a model from files in the request is not supported: {files}")
    config = parameters.get("config")
    if config is None:
        return None
    if not isinstance(config, str):
        raise InvalidArgument("the 'config' parameter must be a string holding JSON")
    override = loads(config.encode(), "the 'config' parameter")
    if not isinstance(override, dict):
        raise InvalidArgument("the 'config' parameter must hold a JSON object")
    return override
