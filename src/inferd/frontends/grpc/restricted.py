"""Restricted API groups on gRPC: each RPC's group, and handlers that refuse a call without the
group's metadata with PERMISSION_DENIED before the servicer sees it.

Triton answers such a call UNAVAILABLE, which clients and proxies take as worth retrying; the
message is Triton's, so its clients' checks match either way.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import grpc

from inferd.frontends.restricted import Restriction

GROUP_OF_RPC: Final[dict[str, str]] = {
    "ServerLive": "health",
    "ServerReady": "health",
    "ModelReady": "health",
    "Check": "health",  # grpc.health.v1.Health
    "Watch": "health",
    "List": "health",
    "ServerMetadata": "metadata",
    "ModelMetadata": "metadata",
    "ModelInfer": "inference",
    "ModelStreamInfer": "inference",
    "ModelConfig": "model-config",
    "RepositoryIndex": "model-repository",
    "RepositoryModelLoad": "model-repository",
    "RepositoryModelUnload": "model-repository",
    "ModelStatistics": "statistics",
    "SystemSharedMemoryStatus": "shared-memory",
    "SystemSharedMemoryRegister": "shared-memory",
    "SystemSharedMemoryUnregister": "shared-memory",
    "CudaSharedMemoryStatus": "shared-memory",
    "CudaSharedMemoryRegister": "shared-memory",
    "CudaSharedMemoryUnregister": "shared-memory",
    "TraceSetting": "trace",
    "LogSettings": "logging",
}

Handler = Callable[[Any, Any], Any]


def guarded(handler: Handler, restriction: Restriction) -> Handler:
    """`handler` (a coroutine or async-generator function of (request, context)), run only for
    a call whose metadata carries the restriction's key and value."""
    if inspect.isasyncgenfunction(handler):

        @functools.wraps(handler)
        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            await _check(restriction, context)
            async for response in handler(request, context):
                yield response

        return stream

    @functools.wraps(handler)
    async def unary(request: Any, context: Any) -> Any:
        await _check(restriction, context)
        return await handler(request, context)

    return unary


async def _check(restriction: Restriction, context: Any) -> None:
    given = next(
        (value for key, value in context.invocation_metadata() or () if key == restriction.header),
        None,
    )
    if isinstance(given, str):  # binary ("-bin") metadata arrives as bytes already
        given = given.encode()
    if not restriction.allows(given):
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED,
            f"This protocol is restricted, expecting header '{restriction.header}'",
        )
