"""Client shared-memory regions (the V2 shared-memory extension), shared by every frontend.

A client creates a POSIX shared-memory object, registers a window of it under a region name,
and then names that region in an input's or output's `shared_memory_region`,
`shared_memory_offset` and `shared_memory_byte_size` parameters.

The registry keeps an open file descriptor per region and copies with pread/pwrite instead of
mapping the object: a client that truncates or unlinks its object while a request is in flight
gets an error rather than crashing the server with SIGBUS. Inputs are copied out when the
request is decoded, so a client overwriting or unregistering the region afterwards cannot
change a request in flight.

Registering makes the server read and write memory a client names, so the registry refuses
everything unless the server was started with `--enable-shared-memory`. CUDA shared memory is
not implemented: every CUDA call is answered with `Unsupported`.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NoReturn

import numpy as np

from inferd.core.errors import AlreadyExists, InvalidArgument, NotFound, Unsupported
from inferd.core.types import Array
from inferd.frontends.tensors import array_from_bytes, raw_bytes

SHM_DIRECTORY: Final = Path("/dev/shm")
DISABLED_MESSAGE: Final = (
    "shared memory is disabled on this server; start it with --enable-shared-memory "
    "(env INFERD_ENABLE_SHARED_MEMORY=1) to allow clients to register regions"
)
CUDA_UNSUPPORTED_MESSAGE: Final = "CUDA shared memory is not supported on this server"

REGION: Final = "shared_memory_region"
OFFSET: Final = "shared_memory_offset"
BYTE_SIZE: Final = "shared_memory_byte_size"
_OPEN_FLAGS: Final = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class Region:
    """A registered window [offset, offset + byte_size) of the shared-memory object `key`."""

    name: str
    key: str
    offset: int
    byte_size: int


@dataclass(frozen=True, slots=True)
class TensorLocation:
    """Where one tensor lives: `byte_size` bytes at `offset` inside region `region`."""

    region: str
    offset: int
    byte_size: int

    def parameters(self) -> dict[str, Any]:
        """The wire parameters naming this location (offset only when not zero, as Triton)."""
        found: dict[str, Any] = {REGION: self.region, BYTE_SIZE: self.byte_size}
        if self.offset:
            found[OFFSET] = self.offset
        return found


class SharedMemoryRegistry:
    """The system shared-memory regions registered by clients, by region name."""

    def __init__(self, enabled: bool = False) -> None:
        self._enabled = enabled
        self._regions: dict[str, tuple[Region, int]] = {}
        # Frontends may decode or encode off the event loop; the lock keeps a descriptor
        # from being closed (and its number reused) between lookup and copy.
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._enabled

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        self._require_enabled()
        if not name:
            raise InvalidArgument("a shared memory region needs a non-empty name")
        _require_size("offset", offset)
        _require_size("byte_size", byte_size)
        fd = _open_object(key, offset + byte_size)
        with self._lock:
            if name in self._regions:
                os.close(fd)
                raise AlreadyExists(f"shared memory region '{name}' is already registered")
            self._regions[name] = (Region(name, key, offset, byte_size), fd)

    def unregister(self, name: str = "") -> None:
        """Forget one region, or every region when `name` is empty (unknown names are ignored,
        as Triton does, so clean-up code may unregister unconditionally)."""
        self._require_enabled()
        with self._lock:
            names = [name] if name else list(self._regions)
            for each in names:
                entry = self._regions.pop(each, None)
                if entry is not None:
                    os.close(entry[1])

    def status(self, name: str = "") -> list[Region]:
        """One region, or every region when `name` is empty."""
        self._require_enabled()
        with self._lock:
            if not name:
                return [region for region, _ in self._regions.values()]
            return [self._lookup(name)[0]]

    def check(self, location: TensorLocation) -> None:
        """Raise unless `location` names a registered region and lies inside it."""
        self._require_enabled()
        with self._lock:
            self._resolve(location)

    def read_into(self, location: TensorLocation, out: memoryview) -> None:
        """Copy the `location.byte_size` bytes at `location` into `out`."""
        self._require_enabled()
        with self._lock:
            region, fd, position = self._resolve(location)
            done = 0
            while done < location.byte_size:
                count = os.preadv(fd, [out[done:]], position + done)
                if count == 0:
                    raise _truncated(region)
                done += count

    def write(self, location: TensorLocation, data: bytes | memoryview) -> None:
        """Copy `data` (at most `location.byte_size` bytes) to the start of `location`."""
        self._require_enabled()
        view = memoryview(data).cast("B")
        with self._lock:
            region, fd, position = self._resolve(location)
            # Writing past the object's end would grow it; refuse instead.
            if os.fstat(fd).st_size < region.offset + region.byte_size:
                raise _truncated(region)
            done = 0
            while done < len(view):
                done += os.pwrite(fd, view[done:], position + done)

    def close(self) -> None:
        """Close every region's descriptor (at shutdown)."""
        with self._lock:
            for _, fd in self._regions.values():
                os.close(fd)
            self._regions.clear()

    def _require_enabled(self) -> None:
        if not self._enabled:
            raise Unsupported(DISABLED_MESSAGE)

    def _lookup(self, name: str) -> tuple[Region, int]:
        entry = self._regions.get(name)
        if entry is None:
            raise NotFound(f"no shared memory region named '{name}' is registered")
        return entry

    def _resolve(self, location: TensorLocation) -> tuple[Region, int, int]:
        """(region, descriptor, absolute position in the object) of a checked location."""
        region, fd = self._lookup(location.region)
        if location.offset + location.byte_size > region.byte_size:
            raise InvalidArgument(
                f"offset {location.offset} + byte size {location.byte_size} runs past the end "
                f"of shared memory region '{region.name}' ({region.byte_size} bytes)"
            )
        return region, fd, region.offset + location.offset


DISABLED: Final = SharedMemoryRegistry(enabled=False)


def cuda_unsupported() -> NoReturn:
    raise Unsupported(CUDA_UNSUPPORTED_MESSAGE)


def tensor_location(parameters: Mapping[str, Any], tensor: str) -> TensorLocation | None:
    """The shared-memory location named by a tensor's parameters, or None if it names none."""
    if REGION not in parameters:
        if BYTE_SIZE in parameters or OFFSET in parameters:
            raise InvalidArgument(f"{tensor}: '{BYTE_SIZE}' needs '{REGION}'")
        return None
    region = parameters[REGION]
    if not isinstance(region, str) or not region:
        raise InvalidArgument(f"{tensor}: '{REGION}' must be a non-empty string")
    if BYTE_SIZE not in parameters:
        raise InvalidArgument(f"{tensor}: '{REGION}' needs '{BYTE_SIZE}'")
    byte_size = parameters[BYTE_SIZE]
    offset = parameters.get(OFFSET, 0)
    _require_size(f"{tensor}: '{BYTE_SIZE}'", byte_size)
    _require_size(f"{tensor}: '{OFFSET}'", offset)
    return TensorLocation(region, offset, byte_size)


def read_tensor(
    registry: SharedMemoryRegistry,
    location: TensorLocation,
    name: str,
    datatype: str,
    shape: list[int],
) -> Array:
    """An input tensor copied out of shared memory (the array owns its bytes)."""
    storage: Any = np.empty(location.byte_size, dtype=np.uint8)  # unlike bytearray, no zero-fill
    buffer = memoryview(storage)
    registry.read_into(location, buffer)
    return array_from_bytes(buffer, name, datatype, shape)


def write_tensor(
    registry: SharedMemoryRegistry, location: TensorLocation, name: str, array: Array, datatype: str
) -> None:
    """Write an output tensor's wire bytes at `location`."""
    raw = raw_bytes(array, datatype)
    size = len(raw)
    if size > location.byte_size:
        raise InvalidArgument(
            f"shared memory size specified for output '{name}' ({location.byte_size} bytes) "
            f"should be at least {size} bytes to hold the results"
        )
    registry.write(location, raw)


def _require_size(what: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidArgument(f"{what} must be a non-negative integer, not {value!r}")


def _object_path(key: str) -> Path:
    """/dev/shm/<key> for a POSIX shared-memory name ("/name" or "name"), never elsewhere."""
    name = key.lstrip("/")
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise InvalidArgument(f"'{key}' is not a valid shared memory key")
    return SHM_DIRECTORY / name


def _open_object(key: str, needed: int) -> int:
    """A read-write descriptor of the shared-memory object `key`, at least `needed` bytes."""
    if not isinstance(key, str):
        raise InvalidArgument("the shared memory key must be a string")
    path = _object_path(key)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise NotFound(f"shared memory object '{key}' does not exist") from None
    except OSError as exc:
        message = f"unable to open shared memory object '{key}': {exc.strerror}"
        raise InvalidArgument(message) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidArgument(f"'{key}' is not a shared memory object")
        if needed > info.st_size:
            raise InvalidArgument(
                f"offset + byte_size ({needed}) exceeds the {info.st_size} bytes of shared "
                f"memory object '{key}'"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def _truncated(region: Region) -> InvalidArgument:
    return InvalidArgument(
        f"shared memory object '{region.key}' of region '{region.name}' shrank below the "
        f"registered {region.offset + region.byte_size} bytes"
    )
