"""Where OpenTelemetry spans go: `--trace-config opentelemetry,KEY=VALUE` flags over the
standard `OTEL_*` variables, and the request tracing and span export made from them.

Keys, as Triton's: `url` (the OTLP receiver), `resource=KEY=VALUE` (repeatable),
`bsp_max_queue_size`, `bsp_schedule_delay` (ms) and `bsp_max_export_batch_size` (the batch span
processor's); and inferd's `protocol` (`grpc` or `http/protobuf`). What a flag leaves out the
OpenTelemetry SDK reads from its variables (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_*`,
`OTEL_TRACES_SAMPLER`, ...). The SDK (the `otel` extra) is imported only in this mode.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from inferd.core.errors import InvalidArgument

if TYPE_CHECKING:
    from inferd.metrics.otel_export import Sender, SpanExport
    from inferd.metrics.otel_spans import OtelTracing
    from inferd.metrics.triton_trace import TritonTracer

_MODE = "opentelemetry,"
# --trace-config key -> the BatchSpanProcessor argument it sets.
_PROCESSOR = {
    "bsp_max_queue_size": "max_queue_size",
    "bsp_schedule_delay": "schedule_delay_millis",
    "bsp_max_export_batch_size": "max_export_batch_size",
}
# The batch setting -> its variable and the SDK's default.
_VARIABLES = {
    "max_queue_size": ("OTEL_BSP_MAX_QUEUE_SIZE", 2048),
    "schedule_delay_millis": ("OTEL_BSP_SCHEDULE_DELAY", 5000),
    "max_export_batch_size": ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512),
}
PROTOCOLS = ("grpc", "http/protobuf")
SERVICE_NAME = "inferd"
SCOPE = "inferd"  # the instrumentation scope of inferd's spans


@dataclass(frozen=True, slots=True)
class OtelSettings:
    url: str = ""  # "": the SDK's variables, else its default
    protocol: str = ""  # "": OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL, else http/protobuf
    resource: dict[str, str] = field(default_factory=dict)
    processor: dict[str, int] = field(default_factory=dict)


def otel_settings(items: Sequence[str]) -> OtelSettings:
    """The `opentelemetry,KEY=VALUE` items of `--trace-config` (the others are Triton's);
    raises `InvalidArgument` naming what is wrong."""
    url = protocol = ""
    resource: dict[str, str] = {}
    processor: dict[str, int] = {}
    for item in items:
        if not item.startswith(_MODE):
            continue
        key, sep, value = item.removeprefix(_MODE).partition("=")
        if not sep:
            raise InvalidArgument(f"--trace-config: '{item}' is not opentelemetry,KEY=VALUE")
        if key == "url":
            url = value
        elif key == "protocol":
            protocol = _protocol(value, item)
        elif key == "resource":
            name, sep, attribute = value.partition("=")
            if not sep or not name:
                raise InvalidArgument(f"--trace-config: '{item}': resource takes KEY=VALUE")
            resource[name] = attribute
        elif key in _PROCESSOR:
            processor[_PROCESSOR[key]] = _positive(value, item)
        else:
            known = ", ".join(["url", "protocol", "resource", *_PROCESSOR])
            raise InvalidArgument(f"--trace-config: '{item}': unknown key (known: {known})")
    return OtelSettings(url, protocol, resource, processor)


def _protocol(value: str, item: str) -> str:
    value = "http/protobuf" if value == "http" else value
    if value not in PROTOCOLS:
        raise InvalidArgument(f"--trace-config: '{item}': protocol is grpc or http/protobuf")
    return value


def _positive(value: str, item: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise InvalidArgument(f"--trace-config: '{item}' takes a positive integer")
    return number


def open_tracing(items: Sequence[str], sampler: TritonTracer) -> tuple[OtelTracing, SpanExport]:
    """Request spans as `--trace-config` says, sampled as `sampler`'s settings say, and their
    export (its `shutdown` exports what is left); raises `InvalidArgument` without the `otel`
    extra."""
    settings = otel_settings(items)
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME as SERVICE
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.sampling import DEFAULT_ON
    except ImportError:
        raise InvalidArgument(
            "--trace-config mode=opentelemetry needs the OpenTelemetry SDK: "
            "pip install 'inferd[otel]'"
        ) from None
    from inferd.metrics.otel_context import ParentBased, SdkSampling
    from inferd.metrics.otel_encode import Envelope
    from inferd.metrics.otel_export import SpanExport
    from inferd.metrics.otel_records import Encoding
    from inferd.metrics.otel_spans import OtelTracing

    resource = Resource.create(settings.resource)
    if str(resource.attributes.get(SERVICE, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE: SERVICE_NAME}))
    # Only read for what the SDK's variables set: the sampler (OTEL_TRACES_SAMPLER, by
    # default: follow the parent's decision) and the ids (OTEL_PYTHON_ID_GENERATOR).
    provider = TracerProvider(resource=resource)
    ids = provider.id_generator
    export = SpanExport(
        _sender(settings),
        Envelope(resource.attributes, resource.schema_url, SCOPE),
        Encoding(ids.generate_span_id),
        **{key: settings.processor.get(key) or _variable(key) for key in _PROCESSOR.values()},
    )
    sampling = ParentBased() if provider.sampler is DEFAULT_ON else SdkSampling(provider.sampler)
    tracing = OtelTracing(
        export.put, sampler, sampling, ids.generate_trace_id, ids.generate_span_id
    )
    return tracing, export


def _variable(key: str) -> int:
    """A batch setting from its `OTEL_BSP_*` variable, else the SDK's default."""
    name, default = _VARIABLES[key]
    value = os.environ.get(name, "")
    try:
        number = int(value)
    except ValueError:
        number = 0
    return number if number > 0 else default


def _sender(settings: OtelSettings) -> Sender:
    protocol = (
        settings.protocol
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    url = settings.url
    if url and "://" not in url:
        url = f"http://{url}"  # Triton's form: host:port/v1/traces
    from inferd.metrics.otel_export import grpc_sender, http_sender

    if protocol == "grpc":
        if not url:
            return grpc_sender(None, None)
        parts = urlsplit(url)  # gRPC has no path: the service names the method
        return grpc_sender(parts.netloc, parts.scheme != "https")
    return http_sender(url or None)
