"""`grpc.health.v1.Health`, the standard gRPC health service (Kubernetes `grpc` probes).

The service name "" (or the KServe service's own name) is the server: SERVING when it is
ready, as `ServerReady` says. Any other name is a model: SERVING when its highest version can
serve, NOT_SERVING while it cannot, and unknown (Check: NOT_FOUND, Watch: SERVICE_UNKNOWN)
when the server has no such model.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Final

import grpc
from grpc_health.v1 import health_pb2

from inferd.core.errors import InvalidArgument, NotFound
from inferd.engine.engine import Engine
from inferd.frontends.grpc.malformed import Malformed

SERVER_NAMES: Final = frozenset(("", "inference.GRPCInferenceService"))
# Watch looks at the engine this often and sends a status only when it changed: the engine has
# no readiness events, and probes and load balancers react in seconds anyway.
WATCH_INTERVAL_S = 1.0
_Response = health_pb2.HealthCheckResponse


class HealthService:
    """Servicer of `grpc.health.v1.Health` for one engine (method names are the RPCs)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def Check(self, request: Any, context: Any) -> Any:
        await _refuse_malformed(request, context)
        status = self._status(request.service)
        if status == _Response.SERVICE_UNKNOWN:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service '{request.service}'")
        return _Response(status=status)

    async def List(self, request: Any, context: Any) -> Any:
        """The server ("") and every model the server knows, each with its status."""
        await _refuse_malformed(request, context)
        names = ["", *dict.fromkeys(row.name for row in self._engine.repository_index())]
        statuses = {name: _Response(status=self._status(name)) for name in names}
        return health_pb2.HealthListResponse(statuses=statuses)

    async def Watch(self, request: Any, context: Any) -> AsyncIterator[Any]:
        await _refuse_malformed(request, context)
        sent = None
        while True:
            status = self._status(request.service)
            if status != sent:
                yield _Response(status=status)
                sent = status
            await asyncio.sleep(WATCH_INTERVAL_S)

    def _status(self, service: str) -> Any:
        if service in SERVER_NAMES:
            ready = self._engine.is_ready()
        else:
            try:
                ready = self._engine.model_ready(service)
            except (NotFound, InvalidArgument):
                return _Response.SERVICE_UNKNOWN
        return _Response.SERVING if ready else _Response.NOT_SERVING


async def _refuse_malformed(request: Any, context: Any) -> None:
    if isinstance(request, Malformed):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.error().message)
