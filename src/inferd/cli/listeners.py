"""The HTTP-style listeners of `inferd serve`: bound sockets, uvicorn servers with the HTTP
port's TLS and protocol class, and the Prometheus endpoint with its collectors."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import socket
from collections.abc import Iterator, Sequence
from typing import Any, cast

import uvicorn
from prometheus_client import ProcessCollector
from prometheus_client.registry import Collector

from inferd.cli.access import allowed_hosts
from inferd.cli.settings import ServerSettings
from inferd.cli.tls import tls_files, uvicorn_options
from inferd.cli.tls_reload import CertificateReload
from inferd.core.errors import Unavailable
from inferd.frontends.http.app import HttpFrontend
from inferd.frontends.http.hosts import HostGuard
from inferd.frontends.http.protocol import protocol_class
from inferd.metrics.exposition import MetricsApp
from inferd.metrics.gpu import open_gpu_metrics
from inferd.metrics.prometheus import PrometheusMetrics
from inferd.metrics.system import SystemMetrics

logger = logging.getLogger("inferd")

# uvicorn logs its lifecycle ("Started server process [PID]", "Shutting down", ...) once per
# server, and two run in this process (HTTP and metrics): the second would repeat the first's
# lines. The metrics server's task runs with this set, and `run` drops its lines below WARNING.
_quiet_lifecycle = contextvars.ContextVar("quiet_lifecycle", default=False)


def not_quieted(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or not _quiet_lifecycle.get()


# uvicorn logs as an ERROR that it cancels the requests still running at the end of the
# shutdown grace: cutting them is what the grace asks for (a stream ends with an error event).
_GRACE_EXCEEDED = "Cancel %s running task(s), timeout graceful shutdown exceeded"


def grace_exceeded_as_warning(record: logging.LogRecord) -> bool:
    if record.msg != _GRACE_EXCEEDED:
        return True
    record.levelno, record.levelname = logging.WARNING, "WARNING"
    return logging.getLogger(record.name).isEnabledFor(logging.WARNING)  # --log-level error


class UvicornServer(uvicorn.Server):
    """uvicorn without its own signal handling: `serve` decides when every frontend stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str, port: int, service: str) -> socket.socket:
    """A listening socket for `service` (named in the error when the address is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise Unavailable(f"cannot listen for {service} on {host}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def uvicorn_server(
    app: Any, settings: ServerSettings, certificates: CertificateReload, name: str
) -> UvicornServer:
    """A uvicorn server for `app`, with the HTTP port's TLS (the metrics port shares it)."""
    files = tls_files(settings, "http")
    config = uvicorn.Config(
        app,
        # The express lane only for the frontend served bare: a middleware (CORS) sees all.
        http=protocol_class(
            settings.http_max_header_bytes, app if isinstance(app, HttpFrontend) else None
        ),
        lifespan="off",
        access_log=False,  # and no `limit_concurrency`: the express lane has neither
        log_config=None,
        # No X-Forwarded-* rewriting middleware and no Server header: both cost per request.
        proxy_headers=False,
        server_header=False,
        # Typed int by uvicorn, but only the delay of its asyncio.timeout: a float keeps the
        # fraction, which int() cut (a grace under a second was none for HTTP streams).
        timeout_graceful_shutdown=cast(int, settings.shutdown_grace_seconds),
        **uvicorn_options(files),
    )
    server = UvicornServer(config)
    certificates.watch_uvicorn(name, server, files)
    return server


def start_metrics(
    metrics: PrometheusMetrics,
    settings: ServerSettings,
    collectors: Sequence[Collector],
    certificates: CertificateReload,
    sock: socket.socket,
) -> tuple[UvicornServer, asyncio.Task[None]]:
    """The Prometheus endpoint (any path answers) on `sock`."""
    registry = metrics.registry()
    for collector in collectors:
        registry.register(collector)
    guarded = HostGuard(MetricsApp(registry), allowed_hosts(settings))
    server = uvicorn_server(guarded, settings, certificates, "metrics")
    quiet = contextvars.copy_context()
    quiet.run(_quiet_lifecycle.set, True)
    task = asyncio.create_task(server.serve(sockets=[sock]), context=quiet)
    host, port = sock.getsockname()[:2]
    logger.info("metrics service listening on %s://%s:%d", scheme(settings), host, port)
    return server, task


def host_collectors(settings: ServerSettings) -> list[Collector]:
    """CPU, memory and GPU metrics, as the settings allow."""
    collectors: list[Collector] = []
    if settings.allow_cpu_metrics:
        collectors += [SystemMetrics(), ProcessCollector(registry=None)]
    gpu = open_gpu_metrics() if settings.allow_gpu_metrics and settings.metrics_port else None
    return collectors + ([gpu] if gpu is not None else [])


def scheme(settings: ServerSettings) -> str:
    return "https" if settings.http_use_ssl else "http"
