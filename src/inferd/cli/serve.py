"""`inferd serve`: build the engine and frontends from settings and run until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn

from inferd.backends.registry import BackendRegistry
from inferd.cli.settings import ServerSettings, add_server_arguments, settings_from_args
from inferd.engine.engine import Engine, EngineSettings
from inferd.engine.lifecycle import ModelState
from inferd.engine.loader import LoadOptions
from inferd.frontends.http.app import HttpFrontend

logger = logging.getLogger("inferd")


class _UvicornServer(uvicorn.Server):
    """uvicorn without its own signal handling: `serve` decides when every frontend stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def build_engine(settings: ServerSettings) -> Engine:
    load = LoadOptions(settings.default_max_batch_size, settings.auto_complete_config)
    engine_settings = EngineSettings(settings.model_repository, load, settings.strict_readiness)
    return Engine(engine_settings, BackendRegistry())


def _log_models(engine: Engine) -> None:
    for row in engine.repository_index():
        label = f"{row.name}" + (f" version {row.version}" if row.version else "")
        if row.state is ModelState.READY:
            logger.info("model %s: READY", label)
        else:
            logger.warning("model %s: %s %s", label, row.state.value, row.reason)


async def serve(settings: ServerSettings) -> None:
    engine = build_engine(settings)
    await engine.load_all()
    _log_models(engine)

    http_socket = bind_socket(settings.host, settings.http_port)
    config = uvicorn.Config(
        HttpFrontend(engine, settings.http_max_body_bytes),
        http="httptools",
        lifespan="off",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )
    http_server = _UvicornServer(config)
    http_task = asyncio.create_task(http_server.serve(sockets=[http_socket]))
    host, port = http_socket.getsockname()[:2]
    logger.info("HTTP service listening on http://%s:%d", host, port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    logger.info("inferd is ready")
    await stop.wait()

    logger.info("stopping: finishing in-flight requests")
    http_server.should_exit = True
    await http_task
    await engine.stop()
    logger.info("stopped")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("serve", help="serve a model repository over KServe V2")
    add_server_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))
    return 0
