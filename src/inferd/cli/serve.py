"""`inferd serve`: build the engine and frontends from settings and run until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import socket
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from prometheus_client.registry import Collector

from inferd.backends.registry import BackendRegistry
from inferd.cli.access import (
    allowed_hosts,
    exposure_warnings,
    host_names_note,
    restrictions,
    startup_error,
)
from inferd.cli.listeners import (
    bind_socket,
    grace_exceeded_as_warning,
    host_collectors,
    not_quieted,
    scheme,
    start_metrics,
    uvicorn_server,
)
from inferd.cli.log_control import ServerLogs
from inferd.cli.rate_limit import rate_limit_error, rate_limiter
from inferd.cli.settings import ServerSettings, add_server_arguments, settings_from_args
from inferd.cli.tls import tls_files
from inferd.cli.tls_reload import CertificateReload
from inferd.core.errors import InferdError, Unavailable
from inferd.core.observer import Observer
from inferd.core.runtime_settings import NO_CONTROLS, RuntimeControls
from inferd.core.tracing import RequestTracing
from inferd.engine.api import EngineSettings, LoadOptions, ModelState
from inferd.engine.engine import Engine
from inferd.engine.response_cache import ResponseCache, cache_capacity
from inferd.frontends import cuda_memory
from inferd.frontends.grpc.server import create_grpc_server
from inferd.frontends.http.app import HttpFrontend
from inferd.frontends.http.cors import Cors, parse_origins
from inferd.frontends.http.hosts import App, HostGuard
from inferd.frontends.shared_memory import RegionLimits, SharedMemoryRegistry
from inferd.instances.placement import InProcessPlacer, InstancePlacer
from inferd.metrics.model_metrics import ModelMetrics
from inferd.metrics.options import metrics_options
from inferd.metrics.otel_config import open_tracing, otel_settings
from inferd.metrics.prometheus import PrometheusMetrics
from inferd.metrics.statistics import Statistics
from inferd.metrics.trace import TraceLog
from inferd.metrics.trace_settings import start_settings
from inferd.metrics.triton_trace import TritonTracer
from inferd.repository.locations import open_repositories

logger = logging.getLogger("inferd")


def build_engine(
    settings: ServerSettings,
    observers: Sequence[Observer] = (),
    statistics: Statistics | None = None,
    placer: InstancePlacer | None = None,
    controls: RuntimeControls = NO_CONTROLS,
    tracing: RequestTracing | None = None,
) -> Engine:
    load = LoadOptions(
        settings.default_max_batch_size,
        settings.auto_complete_config,
        placer or InProcessPlacer(),
        rate_limiter(settings),
    )
    repository = open_repositories(
        settings.model_repository,
        Path(settings.model_cache_dir) if settings.model_cache_dir else None,
        settings.s3_endpoint_url,
    )
    engine_settings = EngineSettings(
        repository,
        load,
        settings.strict_readiness,
        settings.model_control_mode,
        settings.load_model,
        settings.repository_poll_secs,
        settings.model_load_files_max_bytes if settings.allow_model_load_files else None,
        _response_cache(settings),
    )
    return Engine(engine_settings, BackendRegistry(), observers, statistics, controls, tracing)


def _log_models(engine: Engine) -> None:
    for row in engine.repository_index():
        label = f"{row.name}" + (f" version {row.version}" if row.version else "")
        if row.state is ModelState.READY:
            logger.info("model %s: READY", label)
        else:
            logger.warning("model %s: %s %s", label, row.state.value, row.reason)


def _grpc_server(
    engine: Engine,
    shared_memory: SharedMemoryRegistry,
    settings: ServerSettings,
    certificates: CertificateReload,
) -> Any:
    """The gRPC server, bound and not started, or None when `--grpc-port 0` disables it."""
    if not settings.grpc_port:
        return None
    server, _ = create_grpc_server(
        engine,
        settings.host,
        settings.grpc_port,
        settings.grpc_max_message_bytes,
        shared_memory,
        settings.server_name,
        certificates.grpc_credentials(tls_files(settings, "grpc")),
        restrictions(settings, "grpc"),
    )
    return server


def _bind_all(
    engine: Engine,
    shared_memory: SharedMemoryRegistry,
    settings: ServerSettings,
    certificates: CertificateReload,
) -> tuple[socket.socket, Any, socket.socket | None]:
    """Every address the server listens on, bound before any service starts, so that one
    taken address stops the start-up with its error and nothing half-started: the HTTP
    socket, the gRPC server (or None) and the metrics socket (or None)."""
    bound: list[socket.socket] = []
    try:
        bound.append(bind_socket(settings.host, settings.http_port, "HTTP"))
        grpc_server = _grpc_server(engine, shared_memory, settings, certificates)
        if settings.metrics_port:
            bound.append(bind_socket(settings.host, settings.metrics_port, "metrics"))
    except Unavailable:
        for sock in bound:
            sock.close()
        raise
    return bound[0], grpc_server, bound[1] if settings.metrics_port else None


def _settle_garbage_collector() -> None:
    """Keep the cyclic GC off the request path: everything alive after start-up (modules,
    models, configs) is frozen out of collection, and young collections run less often.
    Requests allocate many short-lived objects, and each gen-0 pass costs per request."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def serve(
    settings: ServerSettings,
    placer: InstancePlacer | None = None,
    collectors: Sequence[Collector] = (),
) -> None:
    """Serve until SIGINT/SIGTERM; `placer` says where instances run, `collectors` add to the
    Prometheus metrics (both from the cluster, when there is one)."""
    statistics = Statistics()
    options = metrics_options(settings.metrics_buckets, settings.metrics_config)
    metrics = PrometheusMetrics(
        statistics,
        buckets=options.buckets,
        histograms=options.histograms,
        quantiles=options.quantiles,
    )
    trace_log = TraceLog(settings.log_verbose)
    start = start_settings(settings.trace_config)
    spans = start.get("trace_mode") == ["opentelemetry"]
    tracer = TritonTracer(start, opentelemetry=spans)
    tracing, provider = open_tracing(settings.trace_config, tracer) if spans else (None, None)
    observers: list[Observer] = [statistics, metrics, trace_log, tracer]
    controls = RuntimeControls(
        tracer, ServerLogs(settings.log_verbose, trace_log.set_verbose_level)
    )
    engine = build_engine(settings, observers, statistics, placer, controls, tracing)
    metrics.watch_pending(engine.pending_requests, engine.in_flight_requests)
    metrics.watch_instances(engine.instance_devices)
    metrics.watch_warmups(engine.warmup_durations)
    metrics.watch_cache(engine.cached_versions)
    metrics.watch_configs(engine.model_config)
    try:
        await engine.start()
    except InferdError:
        await engine.stop()  # what was opened (a download folder) is released
        raise
    _log_models(engine)

    shared_memory = SharedMemoryRegistry(
        enabled=settings.enable_shared_memory,
        cuda=cuda_memory.load() if settings.enable_shared_memory else None,
        limits=RegionLimits(settings.shared_memory_max_regions, settings.shared_memory_max_bytes),
    )
    certificates = CertificateReload()
    try:
        http_socket, grpc_server, metrics_socket = _bind_all(
            engine, shared_memory, settings, certificates
        )
    except Unavailable:
        await engine.stop()
        raise
    http_app: App = HttpFrontend(
        engine,
        settings.http_max_body_bytes,
        shared_memory,
        server_name=settings.server_name,
        restrictions=restrictions(settings, "http"),
        allowed_hosts=allowed_hosts(settings),
    )
    if settings.cors_allow_origin:  # otherwise no middleware at all: it costs per request
        cors = Cors(http_app, parse_origins(settings.cors_allow_origin))
        http_app = HostGuard(cors, allowed_hosts(settings))  # before a preflight is answered
    http_server = uvicorn_server(http_app, settings, certificates, "HTTP")
    http_task = asyncio.create_task(http_server.serve(sockets=[http_socket]))
    host, port = http_socket.getsockname()[:2]
    logger.info("HTTP service listening on %s://%s:%d", scheme(settings), host, port)
    if grpc_server is not None:
        await grpc_server.start()
        secure = " (TLS)" if settings.grpc_use_ssl else ""
        logger.info("gRPC service listening on %s:%d%s", settings.host, settings.grpc_port, secure)
    collected = [*collectors, *host_collectors(settings), ModelMetrics()]
    metrics_server = (
        None
        if metrics_socket is None
        else start_metrics(metrics, settings, collected, certificates, metrics_socket)
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # Also without TLS: SIGHUP's default action would end the process.
    loop.add_signal_handler(signal.SIGHUP, certificates.reload)
    for warning in exposure_warnings(settings):
        logger.warning("listening on %s beyond loopback: %s", settings.host, warning)
    note = host_names_note(settings)
    if note is not None:
        logger.info(note)
    _settle_garbage_collector()
    logger.info("inferd is ready")
    await stop.wait()

    logger.info("stopping: finishing in-flight requests")
    http_server.should_exit = True
    grace = settings.shutdown_grace_seconds
    await asyncio.gather(http_task, *([grpc_server.stop(grace)] if grpc_server else []))
    shared_memory.close()
    await engine.stop()
    tracer.close()
    if provider is not None:  # exports the spans still batched
        await asyncio.to_thread(provider.shutdown)
    if metrics_server is not None:
        metrics_server[0].should_exit = True
        await metrics_server[1]
    logger.info("stopped")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("serve", help="serve a model repository over KServe V2")
    add_server_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    # A mistake stops it at once.
    error = startup_error(settings) or _metrics_error(settings) or rate_limit_error(settings)
    if error is not None:
        print(f"inferd: error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(not_quieted)
    uvicorn_log.addFilter(grace_exceeded_as_warning)
    if not settings.cluster:
        return _run_loop(serve(settings))
    from inferd.cluster.connect import ClusterSettings
    from inferd.cluster.session import ClusterSession

    cluster = ClusterSettings(
        settings.cluster, settings.cluster_repo_shared, settings.cluster_placement_timeout
    )
    try:
        session = ClusterSession.open(cluster)
    except InferdError as exc:
        print(f"inferd: error: {exc.message}", file=sys.stderr)
        return 2
    try:
        return _run_loop(serve(settings, session.placer, [session.telemetry]))
    finally:
        session.close()


def _response_cache(settings: ServerSettings) -> ResponseCache | None:
    capacity = cache_capacity(settings.cache_config, settings.response_cache_byte_size)
    if settings.response_cache_byte_size:
        logger.warning(
            "--response-cache-byte-size is deprecated (as in Triton); use --cache-config "
            "local,size=%d",
            capacity,
        )
    return ResponseCache(capacity) if capacity else None


def _metrics_error(settings: ServerSettings) -> str | None:
    try:
        metrics_options(settings.metrics_buckets, settings.metrics_config)
        start_settings(settings.trace_config)
        otel_settings(settings.trace_config)
        cache_capacity(settings.cache_config, settings.response_cache_byte_size)
    except ValueError as exc:
        return str(exc)
    except InferdError as exc:
        return exc.message
    return None


def _run_loop(main: Coroutine[Any, Any, None]) -> int:
    """Run the server to its end; 1 when it cannot start (as Triton refuses to start when a
    repository cannot be read)."""
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(main)
    except InferdError as exc:
        logger.error("cannot serve: %s", exc.message)
        return 1
    return 0
