"""The gRPC side of Triton's trace and logging extensions (`TraceSetting`, `LogSettings`).

A request without settings asks for the current ones. A trace setting with no values clears
it; a log setting carries a bool, a uint32 or a string.
"""

from __future__ import annotations

from typing import Any

from tritonclient.grpc import service_pb2 as pb

from inferd.core.errors import InvalidArgument, Unsupported
from inferd.core.runtime_settings import LogControl, LogValue, TraceControl


def trace_setting(control: TraceControl | None, request: Any) -> Any:
    """The `TraceSettingResponse` to a `TraceSettingRequest`."""
    if control is None:
        raise Unsupported("the trace extension is not enabled on this server")
    model = request.model_name
    if request.settings:
        changes = {key: list(item.value) or None for key, item in request.settings.items()}
        values = control.update_trace_settings(model, changes)
    else:
        values = control.trace_settings(model)
    value = pb.TraceSettingResponse.SettingValue
    return pb.TraceSettingResponse(settings={k: value(value=v) for k, v in values.items()})


def log_settings(control: LogControl | None, request: Any) -> Any:
    """The `LogSettingsResponse` to a `LogSettingsRequest`."""
    if control is None:
        raise Unsupported("the logging extension is not enabled on this server")
    if request.settings:
        changes: dict[str, LogValue] = {}
        for key, item in request.settings.items():
            choice = item.WhichOneof("parameter_choice")
            if choice is None:
                raise InvalidArgument(f"log setting '{key}' has no value")
            changes[key] = getattr(item, choice)
        values = control.update_log_settings(changes)
    else:
        values = control.log_settings()
    return pb.LogSettingsResponse(settings={k: _log_value(v) for k, v in values.items()})


def _log_value(value: LogValue) -> Any:
    setting = pb.LogSettingsResponse.SettingValue
    if isinstance(value, bool):
        return setting(bool_param=value)
    if isinstance(value, int):
        return setting(uint32_param=value)
    return setting(string_param=value)
