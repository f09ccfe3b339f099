"""The export of span records: a queue the request path appends to, and a thread that turns
them into OTLP requests and sends them with the SDK's exporters.

As the SDK's batch span processor: the thread wakes every `schedule_delay_millis`, or sooner
once `max_export_batch_size` spans wait; each request carries at most that many spans; spans
beyond `max_queue_size` waiting are dropped (and counted in a warning). Records are encoded in
pieces of whole records (`Record.encode`), so a request's spans are counted by its records. The
SDK's OTLP exporters keep their retries and `OTEL_EXPORTER_OTLP_*` settings, and their
transports except over plain HTTP without a proxy (`otel_http.py`); they are given the encoded
request (`otel_encode.py`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any, Protocol

from inferd.metrics.otel_encode import Envelope
from inferd.metrics.otel_records import Encoding, Record

logger = logging.getLogger(__name__)


class Sender(Protocol):
    def send(self, payload: bytes, spans: int) -> None:
        """Sends one encoded `ExportTraceServiceRequest` of `spans` spans."""

    def shutdown(self) -> None: ...


class SpanExport:
    """Queued span records, exported in batches by a thread of its own."""

    def __init__(
        self,
        sender: Sender,
        envelope: Envelope,
        encoding: Encoding,
        max_queue_size: int,
        schedule_delay_millis: int,
        max_export_batch_size: int,
    ) -> None:
        self._sender = sender
        self._envelope = envelope
        self._encoding = encoding
        self._max_queue = max_queue_size
        self._delay = schedule_delay_millis / 1000
        self._batch = min(max_export_batch_size, max_queue_size)
        self._lock = threading.Lock()
        self._records: list[Record] = []
        self._waiting = 0  # spans in `_records`
        self._dropped = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="inferd-otel-export", daemon=True)
        self._thread.start()

    def put(self, record: Record) -> None:
        """Queues `record` (the request path's one call)."""
        spans = record.spans()
        with self._lock:
            if self._waiting + spans > self._max_queue or self._stopping:
                self._dropped += spans
                return
            self._records.append(record)
            self._waiting += spans
            full = self._waiting >= self._batch
        if full:
            self._wake.set()

    def shutdown(self) -> None:
        """Exports what is queued, then closes the exporter."""
        with self._lock:
            self._stopping = True
        self._wake.set()
        self._thread.join()
        self._sender.shutdown()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            self._wake.wait(self._delay)
            self._wake.clear()
            with self._lock:
                records, self._records, self._waiting = self._records, [], 0
                dropped, self._dropped = self._dropped, 0
                stopping = self._stopping
            if dropped:
                logger.warning("OpenTelemetry: span queue full, %d spans dropped", dropped)
            try:
                self._export(records)
            except Exception:  # the thread goes on: the next batch may fare better
                logger.exception("OpenTelemetry: exporting spans failed")

    def _export(self, records: list[Record]) -> None:
        pieces: list[bytes] = []  # of the next request, holding `spans` spans
        spans = 0
        for record in records:
            count = record.spans()
            if count <= self._batch:
                if spans + count > self._batch:
                    self._send(pieces, spans)
                    pieces, spans = [], 0
                record.encode(self._encoding, pieces, True)
                spans += count
                continue
            singles: list[bytes] = []  # requests smaller than a record: a piece per span
            record.encode(self._encoding, singles, False)
            for single in singles:
                if spans == self._batch:
                    self._send(pieces, spans)
                    pieces, spans = [], 0
                pieces.append(single)
                spans += 1
        if spans:
            self._send(pieces, spans)

    def _send(self, pieces: list[bytes], spans: int) -> None:
        self._sender.send(self._envelope.request(pieces), spans)


def http_sender(endpoint: str | None) -> Sender:
    """The SDK's OTLP/HTTP exporter, sending encoded requests."""
    import requests
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    class Session(requests.Session):
        """Reads the environment's proxies and certificates for a URL once, not at every
        export (that scan of `os.environ` was most of an export's CPU)."""

        def __init__(self) -> None:
            super().__init__()
            self._settings: dict[tuple[Any, ...], dict[str, Any]] = {}

        def merge_environment_settings(
            self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
        ) -> dict[str, Any]:
            if proxies:
                return super().merge_environment_settings(url, proxies, stream, verify, cert)
            key = (url, stream, verify, cert)
            settings = self._settings.get(key)
            if settings is None:
                settings = super().merge_environment_settings(url, {}, stream, verify, cert)
                self._settings[key] = settings
            return dict(settings)

    # A credential provider's session (the SDK's OTEL_PYTHON_EXPORTER_OTLP_HTTP_*CREDENTIAL_
    # PROVIDER variables) is the SDK's to load, and then used as it is.
    provided = any(
        os.environ.get(f"OTEL_PYTHON_EXPORTER_OTLP_HTTP{kind}_CREDENTIAL_PROVIDER")
        for kind in ("", "_TRACES")
    )
    exporter = OTLPSpanExporter(endpoint=endpoint, session=None if provided else Session())
    client: Any = getattr(exporter, "_client", None)
    if client is None:  # where SDK 1.45 keeps its transport; a later one may move it
        raise RuntimeError("this opentelemetry-exporter-otlp-proto-http has no _client")
    url = str(getattr(exporter, "_endpoint", ""))
    if not provided and url.startswith("http://") and not requests.utils.get_environ_proxies(url):
        # Plain HTTP without a proxy: one kept connection does what the SDK's requests
        # transport does at a fifth of the CPU per export (its urllib3 one: at half).
        from inferd.metrics.otel_http import PlainTransport

        client._transport = PlainTransport()
    return _HttpSender(client, exporter.shutdown)


class _HttpSender:
    def __init__(self, client: Any, shutdown: Callable[[], None]) -> None:
        self._client = client
        self.shutdown = shutdown

    def send(self, payload: bytes, spans: int) -> None:
        self._client.export(payload)  # it logs what failed


def grpc_sender(endpoint: str | None, insecure: bool | None) -> Sender:
    """The SDK's OTLP/gRPC exporter (its retries and channel), sending encoded requests."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    # Its batch of spans becomes (payload, spans) here: what `_export` retries and counts.
    class GrpcSender(OTLPSpanExporter):
        def send(self, payload: bytes, spans: int) -> None:
            batch: Any = (payload, spans)
            self._export(batch)

        def _translate_data(self, data: Any) -> ExportTraceServiceRequest:
            return ExportTraceServiceRequest.FromString(data[0])

        def _count_data(self, data: Any) -> int:
            count: int = data[1]
            return count

    sender: Sender = GrpcSender(endpoint=endpoint, insecure=insecure)
    return sender
