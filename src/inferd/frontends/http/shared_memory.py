"""HTTP routes of the shared-memory extensions, as Triton serves them.

GET  /v2/systemsharedmemory[/region/{r}]/status
POST /v2/systemsharedmemory/region/{r}/register     {"key", "offset"?, "byte_size"}
POST /v2/systemsharedmemory[/region/{r}]/unregister
... and the same under /v2/cudasharedmemory (answered "not supported").
"""

from __future__ import annotations

from typing import Any, Final

from inferd.core.errors import InvalidArgument, NotFound
from inferd.frontends.shared_memory import SharedMemoryRegistry, cuda_unsupported

SYSTEM: Final = "systemsharedmemory"
CUDA: Final = "cudasharedmemory"
KINDS: Final = (SYSTEM, CUDA)


def method_for(action: str) -> str:
    """The HTTP method of an action: status reads, everything else changes state."""
    return "GET" if action == "status" else "POST"


def handle(registry: SharedMemoryRegistry, kind: str, rest: list[str], body: Any) -> Any:
    """Serve `/v2/{kind}/{rest...}`; returns the JSON document to answer, None for no body.

    `body` is the parsed JSON request body (None when empty).
    """
    if rest in (["status"], ["unregister"]):
        region, action = "", rest[0]
    elif len(rest) == 3 and rest[0] == "region" and rest[1]:
        region, action = rest[1], rest[2]
    else:
        raise NotFound(f"no route for /v2/{kind}/{'/'.join(rest)}")
    if kind == CUDA:
        cuda_unsupported()
    if action == "status":
        return [
            {"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size}
            for r in registry.status(region)
        ]
    if action == "unregister":
        registry.unregister(region)
        return None
    if action == "register":
        if not isinstance(body, dict):
            raise InvalidArgument("a register request needs a JSON object body")
        for field in ("key", "byte_size"):
            if field not in body:
                raise InvalidArgument(f"the register request has no '{field}' field")
        registry.register(region, body["key"], body.get("offset", 0), body["byte_size"])
        return None
    raise NotFound(f"no route for /v2/{kind}/{'/'.join(rest)}")
