"""HTTP routes of the shared-memory extensions, as Triton serves them.

GET  /v2/systemsharedmemory[/region/{r}]/status
POST /v2/systemsharedmemory/region/{r}/register     {"key", "offset"?, "byte_size"}
POST /v2/systemsharedmemory[/region/{r}]/unregister
GET  /v2/cudasharedmemory[/region/{r}]/status
POST /v2/cudasharedmemory/region/{r}/register       {"raw_handle": {"b64"}, "device_id",
                                                      "byte_size"}
POST /v2/cudasharedmemory[/region/{r}]/unregister
Where CUDA is unsupported, a CUDA register answers so; status lists no regions, unregister
does nothing.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

from inferd.core.errors import InvalidArgument, NotFound
from inferd.frontends.shared_memory import SharedMemoryRegistry

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
        region, action = "", ""
    if action == "status":
        return _status(registry, kind, region)
    if action == "unregister":
        (registry.unregister_cuda if kind == CUDA else registry.unregister)(region)
        return None
    if action == "register":
        _register(registry, kind, region, body)
        return None
    raise NotFound(f"no route for /v2/{kind}/{'/'.join(rest)}")


def _status(registry: SharedMemoryRegistry, kind: str, region: str) -> list[dict[str, Any]]:
    if kind == CUDA:
        return [
            {"name": r.name, "device_id": r.device_id, "byte_size": r.byte_size}
            for r in registry.cuda_status(region)
        ]
    return [
        {"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size}
        for r in registry.status(region)
    ]


def _register(registry: SharedMemoryRegistry, kind: str, region: str, body: Any) -> None:
    if kind == CUDA:
        registry.require_cuda()  # "not supported" before complaints about the body
        _require_fields(body, ("raw_handle", "device_id", "byte_size"))
        raw_handle = _raw_handle(body["raw_handle"])
        registry.register_cuda(region, raw_handle, body["device_id"], body["byte_size"])
    else:
        _require_fields(body, ("key", "byte_size"))
        registry.register(region, body["key"], body.get("offset", 0), body["byte_size"])


def _require_fields(body: Any, fields: tuple[str, ...]) -> None:
    if not isinstance(body, dict):
        raise InvalidArgument("a register request needs a JSON object body")
    for field in fields:
        if field not in body:
            raise InvalidArgument(f"the register request has no '{field}' field")


def _raw_handle(value: Any) -> bytes:
    """The CUDA IPC handle bytes of `{"b64": "<base64>"}`."""
    if not isinstance(value, dict) or not isinstance(value.get("b64"), str):
        raise InvalidArgument("'raw_handle' must be an object with a base64 string in 'b64'")
    try:
        return base64.b64decode(value["b64"], validate=True)
    except binascii.Error:
        raise InvalidArgument("'raw_handle'.'b64' is not valid base64") from None
