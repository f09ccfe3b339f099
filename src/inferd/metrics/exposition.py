"""The /metrics endpoint: prometheus-client's formats, with counters written as Triton writes them.

A counter family whose samples carry its bare name (the custom counters of Python models,
named by the model as in Triton) is written in the text format as `# TYPE NAME counter` with
samples `NAME`, which is what Triton's server (prometheus-cpp) writes and Triton's example
clients look for. prometheus-client would write its HELP and TYPE lines as `NAME_total` (it
expects OpenMetrics-style counters, whose samples end in `_total`), so those two lines are
rewritten per family. OpenMetrics requires the suffix, so such a family is `unknown` there.
Everything else is prometheus-client's own output, content negotiation and compression.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


def bare_counter(metric: Metric) -> bool:
    """A counter whose samples are named as the family (no `_total`), as Triton's are (an
    empty family is prometheus-client's kind: its samples would end in `_total`)."""
    return (
        metric.type == "counter"
        and bool(metric.samples)
        and all(s.name == metric.name for s in metric.samples)
    )


class _Only(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


def _as_unknown(metric: Metric) -> Metric:
    untyped = Metric(metric.name, metric.documentation, "unknown")
    untyped.samples = list(metric.samples)
    return untyped


def text_format(registry: Collector, encoder: Callable[[Collector], bytes]) -> bytes:
    """`encoder`'s text output for `registry`, with bare counters' HELP and TYPE lines named
    as their samples are."""
    chunks: list[bytes] = []
    for metric in registry.collect():
        text = encoder(_Only([metric]))
        if bare_counter(metric):
            help_line, type_line, rest = text.split(b"\n", 2)
            total = f" {metric.name}_total".encode()
            name = f" {metric.name}".encode()
            text = b"\n".join(
                (help_line.replace(total, name, 1), type_line.replace(total, name, 1), rest)
            )
        chunks.append(text)
    return b"".join(chunks)


def openmetrics_format(registry: Collector, encoder: Callable[[Collector], bytes]) -> bytes:
    metrics = [_as_unknown(m) if bare_counter(m) else m for m in registry.collect()]
    return encoder(_Only(metrics))


def render(registry: CollectorRegistry, accept: str, names: list[str] | None) -> tuple[bytes, str]:
    """The page for a scrape with this Accept header (and `name[]` filter): body, content type."""
    encoder, content_type = choose_encoder(accept)
    source: Collector = registry.restricted_registry(names) if names else registry
    if content_type.startswith("application/openmetrics-text"):
        return openmetrics_format(source, encoder), content_type
    return text_format(source, encoder), content_type


class MetricsApp:
    """ASGI app answering every path with the metrics of `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        headers: dict[str, list[str]] = {}
        for key, value in scope.get("headers", []):
            headers.setdefault(key.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        names = parse_qs(scope.get("query_string", b"").decode()).get("name[]")
        body, content_type = render(self._registry, ",".join(headers.get("accept", [])), names)
        response_headers = [(b"content-type", content_type.encode())]
        if gzip_accepted(",".join(headers.get("accept-encoding", []))):
            body = gzip.compress(body)
            response_headers.append((b"content-encoding", b"gzip"))
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})
