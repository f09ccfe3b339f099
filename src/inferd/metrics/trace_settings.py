"""The trace settings of Triton's trace extension: their values checked one by one and by
scope, and the start-up ones of `--trace-config` (`TritonTracer` applies them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from inferd.core.errors import InvalidArgument
from inferd.core.runtime_settings import TraceValues

LEVELS = ("OFF", "TIMESTAMPS", "TENSORS")
# Triton's defaults: off, 1 of 1000 requests, no limit, traces kept until the server stops.
DEFAULTS: TraceValues = {
    "trace_level": ["OFF"],
    "trace_rate": ["1000"],
    "trace_count": ["-1"],
    "log_frequency": ["0"],
    "trace_file": [""],
    "trace_mode": ["triton"],
}
_MINIMUM = {"trace_rate": 0, "trace_count": -1, "log_frequency": 0}
_MAXIMUM = 2**31 - 1  # Triton parses each into an int
MODES = ("triton", "opentelemetry")


def check_trace_setting(key: str, values: Sequence[str]) -> list[str]:
    """The values of one setting, checked (raises `InvalidArgument` naming what is wrong)."""
    if key not in DEFAULTS:
        raise InvalidArgument(f"unknown trace setting '{key}' (known: {', '.join(DEFAULTS)})")
    values = [str(v) for v in values]
    if key == "trace_level":
        levels = [v.upper() for v in values]
        if not levels or any(v not in LEVELS for v in levels):
            raise InvalidArgument(f"trace_level takes {', '.join(LEVELS)}, not {values}")
        if "OFF" in levels and len(levels) > 1:
            raise InvalidArgument("trace_level OFF cannot be combined with other levels")
        return levels
    if len(values) != 1:
        raise InvalidArgument(f"trace setting '{key}' takes one value, not {values}")
    value = values[0]
    if key in _MINIMUM:
        try:
            number = int(value)
        except ValueError:
            raise InvalidArgument(f"trace setting '{key}' must be an integer: '{value}'") from None
        if not _MINIMUM[key] <= number <= _MAXIMUM:
            raise InvalidArgument(
                f"trace setting '{key}' is out of range [{_MINIMUM[key]}, {_MAXIMUM}]: {number}"
            )
        return [str(number)]
    if key == "trace_mode" and value not in MODES:
        raise InvalidArgument(f"trace_mode '{value}' is not supported ({', '.join(MODES)})")
    return [value]


def check_trace_scope(values: Mapping[str, list[str]], opentelemetry: bool) -> None:
    """The settings of one scope, checked together."""
    mode = values["trace_mode"][0]
    if mode == "opentelemetry" and not opentelemetry:
        raise InvalidArgument(
            "trace_mode 'opentelemetry' needs the server started with "
            "--trace-config mode=opentelemetry"
        )
    if values["trace_rate"] == ["0"] and mode != "opentelemetry":
        raise InvalidArgument(
            "trace_rate 0 (trace only requests that carry a client's trace context) needs "
            "trace_mode opentelemetry"
        )


def start_settings(items: Sequence[str]) -> TraceValues:
    """Settings from `--trace-config KEY=VALUE` flags (KEY with or without `trace_`: level,
    rate, count, log_frequency, file, mode; a repeated level adds a level). As in Triton,
    `triton,KEY=VALUE` sets the file settings (log-frequency may be spelt so) and
    `opentelemetry,KEY=VALUE` items are the exporter's (`inferd.metrics.otel_config`)."""
    settings: TraceValues = {}
    for item in items:
        mode, comma, setting = item.partition(",")
        if comma and mode == "opentelemetry":
            continue
        if comma and mode != "triton":
            raise InvalidArgument(f"--trace-config: '{item}': the mode is triton or opentelemetry")
        key, sep, value = (setting if comma else item).partition("=")
        key = key.replace("-", "_")
        name = key if key in DEFAULTS else f"trace_{key}"
        if not sep or name not in DEFAULTS:
            raise InvalidArgument(f"--trace-config: '{item}' is not KEY=VALUE with a known KEY")
        previous = settings.get(name, []) if name == "trace_level" else []
        settings[name] = check_trace_setting(name, [*previous, value])
    check_trace_scope({**DEFAULTS, **settings}, opentelemetry=True)
    return settings
