"""The HTTP side of the model repository extension's load and unload."""

from __future__ import annotations

import binascii
from typing import Any

from inferd.core.errors import InvalidArgument
from inferd.engine.model_files import is_file_parameter
from inferd.frontends.http.codec import loads


def load_request(document: Any) -> tuple[dict[str, Any] | None, dict[str, bytes]]:
    """The config and model files a load request carries, as tritonclient sends them:
    `{"parameters": {"config": "<model config as a JSON string>", "file:1/model.onnx":
    "<base64>"}}` (body and each parameter optional)."""
    if document is None:
        return None, {}
    if not isinstance(document, dict):
        raise InvalidArgument("the load request must be a JSON object")
    parameters = document.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidArgument("'parameters' of the load request must be an object")
    files = {key: _file(key, value) for key, value in parameters.items() if is_file_parameter(key)}
    config = parameters.get("config")
    if config is None:
        return None, files
    if not isinstance(config, str):
        raise InvalidArgument("the 'config' parameter must be a string holding JSON")
    override = loads(config.encode(), "the 'config' parameter")
    if not isinstance(override, dict):
        raise InvalidArgument("the 'config' parameter must hold a JSON object")
    return override, files


def _file(key: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise InvalidArgument(f"file parameter '{key}' must be a base64 string")
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"file parameter '{key}' is not valid base64") from None
