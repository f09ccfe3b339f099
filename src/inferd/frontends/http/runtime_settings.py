"""The HTTP side of Triton's trace and logging extensions: JSON in, JSON out.

    GET|POST /v2/trace/setting, /v2/models/{m}/trace/setting
    GET|POST /v2/logging

Trace settings are strings except `trace_level`, a list (a POST may give numbers, and null to
clear a setting); log settings are typed (booleans, an integer, strings).
"""

from __future__ import annotations

from typing import Any

from inferd.core.errors import InvalidArgument, Unsupported
from inferd.core.runtime_settings import LogControl, LogValue, TraceControl, TraceValues

TRACE = ("trace", "setting")


def trace_answer(control: TraceControl | None, model: str, document: Any | None) -> dict[str, Any]:
    """The settings after applying a POST's `document` (None: a GET)."""
    if control is None:
        raise Unsupported("the trace extension is not enabled on this server")
    if document is None:
        values = control.trace_settings(model)
    else:
        values = control.update_trace_settings(model, _trace_changes(document))
    return _trace_document(values)


def log_answer(control: LogControl | None, document: Any | None) -> dict[str, Any]:
    if control is None:
        raise Unsupported("the logging extension is not enabled on this server")
    if document is None:
        return control.log_settings()
    if not isinstance(document, dict):
        raise InvalidArgument("log settings must be a JSON object")
    changes: dict[str, LogValue] = {}
    for key, value in document.items():
        if not isinstance(value, bool | int | str):
            raise InvalidArgument(f"log setting '{key}' must be a boolean, number or string")
        changes[key] = value
    return control.update_log_settings(changes)


def _trace_changes(document: Any) -> dict[str, list[str] | None]:
    if not isinstance(document, dict):
        raise InvalidArgument("trace settings must be a JSON object")
    changes: dict[str, list[str] | None] = {}
    for key, value in document.items():
        items = value if isinstance(value, list) else [value]
        if value is not None and not all(_scalar(item) for item in items):
            raise InvalidArgument(f"trace setting '{key}' must be a string or a list of strings")
        changes[key] = None if value is None else [str(item) for item in items]
    return changes


def _scalar(item: Any) -> bool:
    return isinstance(item, str | int | float) and not isinstance(item, bool)


def _trace_document(values: TraceValues) -> dict[str, Any]:
    return {key: v if key == "trace_level" else v[0] for key, v in values.items()}
