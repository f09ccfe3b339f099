"""Build and bind the `grpc.aio` server that carries the gRPC frontend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import grpc
from tritonclient.grpc import service_pb2 as pb

from inferd.engine.engine import Engine
from inferd.frontends.grpc.malformed import parser
from inferd.frontends.grpc.servicer import GrpcFrontend
from inferd.frontends.grpc.wire import serialize_infer_response, serialize_stream_response
from inferd.frontends.identity import DEFAULT_SERVER_NAME
from inferd.frontends.shared_memory import DISABLED, SharedMemoryRegistry


def create_grpc_server(
    engine: Engine,
    host: str,
    port: int,
    max_message_bytes: int,
    shared_memory: SharedMemoryRegistry = DISABLED,
    server_name: str = DEFAULT_SERVER_NAME,
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[Any, int]:
    """(server, bound port), over TLS when `credentials` are given; call within the running
    event loop, then `await server.start()`."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            # Without this, grpc shares a port already in use instead of failing to bind.
            ("grpc.so_reuseport", 0),
        ]
    )
    server.add_generic_rpc_handlers(
        (_service_handler(GrpcFrontend(engine, shared_memory, server_name)),)
    )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    # Both raise RuntimeError when they cannot bind.
    bound: int = (
        server.add_insecure_port(address)
        if credentials is None
        else server.add_secure_port(address, credentials)
    )
    return server, bound


# Inference answers carry their outputs' bytes without protobuf's copies (wire.py).
_SERIALIZERS: Final[dict[str, Callable[[Any], bytes]]] = {
    "ModelInfer": serialize_infer_response,
    "ModelStreamInfer": serialize_stream_response,
}


def _service_handler(frontend: GrpcFrontend) -> Any:
    """The generated `add_GRPCInferenceServiceServicer_to_server`, but with deserializers that
    hand the servicer unparseable bytes as `Malformed` rather than failing with UNKNOWN."""
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    handlers = {}
    for method in service.methods:
        make = (
            grpc.stream_stream_rpc_method_handler
            if method.client_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        handlers[method.name] = make(
            getattr(frontend, method.name),
            request_deserializer=parser(getattr(pb, method.input_type.name)),
            response_serializer=_SERIALIZERS.get(
                method.name, getattr(pb, method.output_type.name).SerializeToString
            ),
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
