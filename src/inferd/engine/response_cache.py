"""The response cache (Triton's `local` cache): the outputs of earlier requests, found again by
a hash of what determines them, so a repeated request is answered without running its model.

One cache for the whole server (`--cache-config local,size=BYTES`), used by the models whose
config sets `response_cache { enable: true }`. The key hashes the model name and version,
every input (name, datatype, shape, bytes), the outputs asked for with their parameters that
change them (classification), and the request parameters, leaving out those that only say
how the answer travels or when it runs (binary data, shared memory, priority, timeout). The
cache holds at most `capacity` bytes of output data and keys, and drops the least recently
used entries first. It lives on the event loop, so it takes no lock.
"""

from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from inferd.core.calls import CALLERS
from inferd.core.errors import InvalidArgument
from inferd.core.types import Array, InferRequest

CACHE_FLAG = "--cache-config"

# Parameters that decide how an answer is sent, or when its request runs, not what it holds.
_OUTPUT_TRANSPORT = frozenset(
    {"binary_data", "shared_memory_region", "shared_memory_offset", "shared_memory_byte_size"}
)
_REQUEST_TRANSPORT = frozenset({"binary_data_output", "priority", "timeout", CALLERS})
_LENGTH = struct.Struct("<Q")


def cache_capacity(items: Sequence[str]) -> int:
    """The byte size of `--cache-config` values in Triton's syntax (`local,size=BYTES`, the
    flag repeatable), also when the environment variable's commas split them apart; 0 when
    none is given. Raises `InvalidArgument` for anything else."""
    cache, capacity = "", 0
    for token in ",".join(items).split(",") if items else ():
        key, equals, value = token.partition("=")
        if not equals:  # a cache's name; its settings follow
            if token != "local":
                raise InvalidArgument(
                    f"{CACHE_FLAG} '{token}': inferd has only the 'local' cache (local,size=BYTES)"
                )
            cache = token
        elif not cache or key != "size" or not value.isdigit() or int(value) == 0:
            raise InvalidArgument(
                f"{CACHE_FLAG} '{token}': expected local,size=BYTES with BYTES above 0"
            )
        else:
            capacity = int(value)
    if cache and not capacity:
        raise InvalidArgument(f"{CACHE_FLAG} local: expected local,size=BYTES with BYTES above 0")
    return capacity


def cache_key(model_name: str, version: int, request: InferRequest) -> bytes:
    """A 16-byte hash of everything in `request` that decides its outputs.

    One description of it all (its repr: names, datatypes, shapes, outputs, parameters) is
    hashed first, then each input's data: the shapes fix where one input's bytes end and the
    next begin, and BYTES elements are hashed after their lengths.
    """
    inputs = request.inputs
    names = sorted(inputs)
    outputs = request.outputs
    described = (
        model_name,
        version,
        [(name, inputs[name].dtype.str, inputs[name].shape) for name in names],
        # None (every output) differs from any list of them.
        None
        if outputs is None
        else [(o.name, _kept(o.parameters, _OUTPUT_TRANSPORT)) for o in outputs],
        _kept(request.parameters, _REQUEST_TRANSPORT),
    )
    digest = hashlib.blake2b(repr(described).encode(), digest_size=16)
    for name in names:
        array = inputs[name]
        if array.dtype == np.object_:
            for item in array.reshape(-1):
                data = item if isinstance(item, bytes) else str(item).encode()
                digest.update(_LENGTH.pack(len(data)))
                digest.update(data)
        else:
            digest.update(np.ascontiguousarray(array).data)
    return digest.digest()


def _kept(parameters: dict[str, object], left_out: frozenset[str]) -> list[tuple[str, str]]:
    if not parameters:
        return []
    return sorted((k, repr(v)) for k, v in parameters.items() if k not in left_out)


class ResponseCache:
    """Outputs by key, least recently used first, within `capacity` bytes."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0  # bytes of the entries held: their keys and output data
        self._entries: OrderedDict[bytes, tuple[dict[str, Array], int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: bytes) -> dict[str, Array] | None:
        """The outputs stored under `key` (read-only arrays, in a dict of the caller's own),
        now the most recently used; None when absent."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return dict(entry[0])

    def insert(self, key: bytes, outputs: dict[str, Array]) -> None:
        """Store a copy of `outputs` under `key`, dropping the least recently used entries to
        make room; outputs larger than the whole cache are not stored."""
        size = len(key) + sum(_data_bytes(a) for a in outputs.values())
        if size > self.capacity:
            return
        old = self._entries.pop(key, None)  # two misses of one key ran at once: keep one
        if old is not None:
            self.used -= old[1]
        while self.used + size > self.capacity:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.used -= dropped
        self._entries[key] = ({name: _frozen(a) for name, a in outputs.items()}, size)
        self.used += size


def _data_bytes(array: Array) -> int:
    if array.dtype == np.object_:
        return sum(len(item) if isinstance(item, bytes) else 8 for item in array.reshape(-1))
    return int(array.nbytes)


def _frozen(array: Array) -> Array:
    """A read-only copy: the model's array may be a view of a whole batch, or reused."""
    copy = np.array(array, copy=True)
    copy.flags.writeable = False
    return copy
