"""Build and bind the `grpc.aio` server that carries the gRPC frontend."""

from __future__ import annotations

from typing import Any

import grpc
from tritonclient.grpc import service_pb2_grpc

from inferd.engine.engine import Engine
from inferd.frontends.grpc.servicer import GrpcFrontend
from inferd.frontends.identity import DEFAULT_SERVER_NAME
from inferd.frontends.shared_memory import DISABLED, SharedMemoryRegistry
from inferd.metrics.statistics import Statistics


def create_grpc_server(
    engine: Engine,
    statistics: Statistics | None,
    host: str,
    port: int,
    max_message_bytes: int,
    shared_memory: SharedMemoryRegistry = DISABLED,
    server_name: str = DEFAULT_SERVER_NAME,
) -> tuple[Any, int]:
    """(server, bound port); call within the running event loop, then `await server.start()`."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            # Without this, grpc shares a port already in use instead of failing to bind.
            ("grpc.so_reuseport", 0),
        ]
    )
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        GrpcFrontend(engine, statistics, shared_memory, server_name), server
    )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound: int = server.add_insecure_port(address)  # raises RuntimeError when it cannot bind
    return server, bound
