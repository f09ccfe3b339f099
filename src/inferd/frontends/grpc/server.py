"""Build and bind the `grpc.aio` server that carries the gRPC frontend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import grpc
from grpc_health.v1 import health_pb2
from tritonclient.grpc import service_pb2 as pb

from inferd.core.errors import Unavailable
from inferd.engine.engine import Engine
from inferd.frontends.grpc.health import HealthService
from inferd.frontends.grpc.malformed import parser
from inferd.frontends.grpc.restricted import GROUP_OF_RPC, guarded
from inferd.frontends.grpc.servicer import GrpcFrontend
from inferd.frontends.grpc.wire import serialize_infer_response, serialize_stream_response
from inferd.frontends.identity import DEFAULT_SERVER_NAME
from inferd.frontends.restricted import Restrictions
from inferd.frontends.shared_memory import DISABLED, SharedMemoryRegistry


def create_grpc_server(
    engine: Engine,
    host: str,
    port: int,
    max_message_bytes: int,
    shared_memory: SharedMemoryRegistry = DISABLED,
    server_name: str = DEFAULT_SERVER_NAME,
    credentials: grpc.ServerCredentials | None = None,
    restrictions: Restrictions | None = None,
) -> tuple[Any, int]:
    """(server, bound port), over TLS when `credentials` are given, with the KServe service and
    the standard health service; call within the running event loop, then
    `await server.start()`."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            # Without this, grpc shares a port already in use instead of failing to bind.
            ("grpc.so_reuseport", 0),
        ]
    )
    frontend = GrpcFrontend(engine, shared_memory, server_name)
    server.add_generic_rpc_handlers(
        (
            _service_handler(pb, "GRPCInferenceService", frontend, restrictions or {}),
            _service_handler(health_pb2, "Health", HealthService(engine), restrictions or {}),
        )
    )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound: int = (
            server.add_insecure_port(address)
            if credentials is None
            else server.add_secure_port(address, credentials)
        )
    except RuntimeError:  # grpc's way of saying it cannot bind
        raise Unavailable(
            f"cannot listen for gRPC on {address}: the address is in use or not available"
        ) from None
    return server, bound


# Inference answers carry their outputs' bytes without protobuf's copies (wire.py).
_SERIALIZERS: Final[dict[str, Callable[[Any], bytes]]] = {
    "ModelInfer": serialize_infer_response,
    "ModelStreamInfer": serialize_stream_response,
}
# ModelInfer decodes its call's bytes itself (known_requests.py): no protobuf message first.
_UNPARSED: Final = frozenset({"ModelInfer"})
_MAKERS: Final[dict[tuple[bool, bool], Callable[..., Any]]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def _service_handler(
    module: Any, service_name: str, servicer: Any, restrictions: Restrictions
) -> Any:
    """The generated `add_..._to_server` of `module`'s service, but with deserializers that
    hand the servicer unparseable bytes as `Malformed` rather than failing with UNKNOWN, and
    the methods of restricted groups guarded."""
    service = module.DESCRIPTOR.services_by_name[service_name]
    handlers = {}
    for method in service.methods:
        behaviour = getattr(servicer, method.name)
        restriction = restrictions.get(GROUP_OF_RPC[method.name])
        if restriction is not None:
            behaviour = guarded(behaviour, restriction)
        make = _MAKERS[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = make(
            behaviour,
            request_deserializer=None
            if method.name in _UNPARSED
            else parser(getattr(module, method.input_type.name)),
            response_serializer=_SERIALIZERS.get(
                method.name, getattr(module, method.output_type.name).SerializeToString
            ),
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
