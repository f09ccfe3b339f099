"""The response cache (Triton's `local` cache): the outputs of earlier requests, found again by
a hash of what determines them, so a repeated request is answered without running its model.

One cache for the whole server (`--cache-config local,size=BYTES`), used by the models whose
config sets `response_cache { enable: true }`. The key hashes the model name and version,
every input (name, datatype, shape, bytes), the outputs asked for with their parameters that
change them (classification), and the request parameters, leaving out those that only say
how the answer travels or when it runs (binary data, shared memory, priority, timeout). The
cache holds at most `capacity` bytes of output data and keys, and drops the least recently
used entries first. An entry counts as many bytes as Triton's cache holds for it (the
outputs packed with their names, datatypes and shapes, as Triton's `CacheEntry` serializes
them, plus the key), so a `size` sized for Triton holds as many answers here. It lives on the
event loop, so it takes no lock.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from inferd.core.calls import CALLERS
from inferd.core.datatypes import v2_datatype
from inferd.core.errors import InvalidArgument
from inferd.core.types import Array, InferRequest

CACHE_FLAG = "--cache-config"

# Parameters that decide how an answer is sent, or when its request runs, not what it holds.
_OUTPUT_TRANSPORT = frozenset(
    {"binary_data", "shared_memory_region", "shared_memory_offset", "shared_memory_byte_size"}
)
_REQUEST_TRANSPORT = frozenset({"binary_data_output", "priority", "timeout", CALLERS})
_LENGTH = struct.Struct("<Q")
# Triton's packed output: its total size (8), name, datatype and shape each after a 4-byte
# size, data after an 8-byte size; a response adds its output count (4).
_OUTPUT_HEADER = 8 + 4 + 4 + 4 + 8
_RESPONSE_HEADER = 4

logger = logging.getLogger(__name__)


def cache_capacity(items: Sequence[str], byte_size: int = 0) -> int:
    """The byte size of `--cache-config` values in Triton's syntax (`local,size=BYTES`, the
    flag repeatable), also when the environment variable's commas split them apart, or of
    Triton's older `--response-cache-byte-size` (`byte_size`); 0 when none is given. Raises
    `InvalidArgument` for anything else."""
    if byte_size:
        if items:  # Triton's words
            raise InvalidArgument(
                "Incompatible flags --response-cache-byte-size and --cache-config both "
                "provided. Please provide one or the other."
            )
        if byte_size < 0:
            raise InvalidArgument(f"--response-cache-byte-size {byte_size}: expected BYTES >= 0")
        return byte_size
    cache, capacity = "", 0
    tokens = ",".join(items).split(",") if items else []
    if len({t for t in tokens if "=" not in t}) > 1:  # Triton's words
        raise InvalidArgument(
            f"{CACHE_FLAG}: found multiple cache configurations, but only a single cache is "
            "currently supported"
        )
    for token in tokens:
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
        size = len(key) + _RESPONSE_HEADER + sum(_packed_bytes(n, a) for n, a in outputs.items())
        if size > self.capacity:
            # Triton's words: its QA looks for them.
            logger.error(
                "Failed to insert key [%s] into response cache: the entry's %d bytes exceed "
                "the cache's size of %d bytes",
                key.hex(),
                size,
                self.capacity,
            )
            return
        old = self._entries.pop(key, None)  # two misses of one key ran at once: keep one
        if old is not None:
            self.used -= old[1]
        while self.used + size > self.capacity:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.used -= dropped
        self._entries[key] = ({name: _frozen(a) for name, a in outputs.items()}, size)
        self.used += size


def _packed_bytes(name: str, array: Array) -> int:
    """The bytes of one output packed as Triton's cache packs it."""
    if array.dtype == np.object_:  # each element after its 4-byte length
        data = sum(4 + (len(i) if isinstance(i, bytes) else 8) for i in array.reshape(-1))
    else:
        data = int(array.nbytes)
    described = len(name.encode()) + len(v2_datatype(array.dtype)) + 8 * array.ndim
    return _OUTPUT_HEADER + described + data


def _frozen(array: Array) -> Array:
    """A read-only copy: the model's array may be a view of a whole batch, or reused."""
    copy = np.array(array, copy=True)
    copy.flags.writeable = False
    return copy
