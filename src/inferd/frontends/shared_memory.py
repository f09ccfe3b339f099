"""Client shared-memory regions (the V2 shared-memory extension), shared by every frontend.

A client creates a POSIX shared-memory object, registers a window of it under a region name,
and then names that region in an input's or output's `shared_memory_region`,
`shared_memory_offset` and `shared_memory_byte_size` parameters.

The registry keeps an open file descriptor per region and copies with pread/pwrite instead of
mapping the object: a client that truncates or unlinks its object while a request is in flight
gets an error rather than crashing the server with SIGBUS. Inputs are copied out when the
request is decoded, so a client overwriting or unregistering the region afterwards cannot
change a request in flight.

CUDA regions (device memory a client exports as a CUDA IPC handle) live in the same registry,
mapped and copied by `cuda_memory.py`; where cuda-python or a CUDA device is missing,
registering one is answered with `Unsupported`.

Registering makes the server read and write memory a client names, so the registry refuses
everything unless the server was started with `--enable-shared-memory`.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import numpy as np

from inferd.core.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
    Unsupported,
)
from inferd.core.types import Array
from inferd.frontends.cuda_memory import CudaRuntime
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
REGIONS_FLAG: Final = "--shared-memory-max-regions"
BYTES_FLAG: Final = "--shared-memory-max-bytes"


@dataclass(frozen=True, slots=True)
class RegionLimits:
    """How many regions may be registered at once, and how many bytes they may span in all
    (system and CUDA together): each holds a descriptor or a mapping, and an input read from
    one is as large as the region allows."""

    max_regions: int = 1024
    max_bytes: int = 64 * 1024**3


@dataclass(frozen=True, slots=True)
class Region:
    """A registered window [offset, offset + byte_size) of the shared-memory object `key`."""

    name: str
    key: str
    offset: int
    byte_size: int


@dataclass(frozen=True, slots=True)
class CudaRegion:
    """A registered CUDA allocation: `byte_size` bytes on device `device_id`."""

    name: str
    device_id: int
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


class RegionMemory(Protocol):
    """The memory behind one region; positions count from the region's start."""

    def read_into(self, position: int, out: memoryview) -> None: ...

    def write(self, position: int, data: memoryview) -> None: ...

    def close(self) -> None: ...


class _ObjectMemory:
    """A registered window of a POSIX shared-memory object, copied through its descriptor."""

    def __init__(self, region: Region, fd: int) -> None:
        self._region = region
        self._fd = fd

    def read_into(self, position: int, out: memoryview) -> None:
        start = self._region.offset + position
        done = 0
        while done < len(out):
            count = os.preadv(self._fd, [out[done:]], start + done)
            if count == 0:
                raise _truncated(self._region)
            done += count

    def write(self, position: int, data: memoryview) -> None:
        # Writing past the object's end would grow it; refuse instead.
        if os.fstat(self._fd).st_size < self._region.offset + self._region.byte_size:
            raise _truncated(self._region)
        start = self._region.offset + position
        done = 0
        while done < len(data):
            done += os.pwrite(self._fd, data[done:], start + done)

    def close(self) -> None:
        os.close(self._fd)


_Record = TypeVar("_Record", Region, CudaRegion)


class SharedMemoryRegistry:
    """The system and CUDA shared-memory regions registered by clients, by region name.

    Names are unique across both kinds, as in Triton; a tensor may name a region of either.
    `cuda` is the CUDA runtime when the server can map CUDA IPC handles (None: it cannot).
    """

    def __init__(
        self,
        enabled: bool = False,
        cuda: CudaRuntime | None = None,
        limits: RegionLimits | None = None,
    ) -> None:
        self._enabled = enabled
        self._cuda = cuda if enabled else None
        self._limits = limits or RegionLimits()
        self._regions: dict[str, tuple[Region | CudaRegion, RegionMemory]] = {}
        # Frontends may decode or encode off the event loop; the lock keeps a region from
        # being closed (and a descriptor number reused) between lookup and copy.
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def cuda_enabled(self) -> bool:
        return self._cuda is not None

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        self._require_enabled()
        _require_name(name)
        _require_size("offset", offset)
        _require_size("byte_size", byte_size)
        self._require_unused(name)
        fd = _open_object(key, offset + byte_size)
        region = Region(name, key, offset, byte_size)
        self._add(region, _ObjectMemory(region, fd))

    def register_cuda(self, name: str, raw_handle: bytes, device_id: int, byte_size: int) -> None:
        """Map a client's CUDA IPC handle (of memory on `device_id`) as region `name`."""
        cuda = self.require_cuda()
        _require_name(name)
        _require_size("device_id", device_id)
        _require_size("byte_size", byte_size)
        self._require_unused(name)
        memory = cuda.open(raw_handle, device_id, byte_size)
        self._add(CudaRegion(name, device_id, byte_size), memory)

    def require_cuda(self) -> CudaRuntime:
        """The CUDA runtime, or `Unsupported` when CUDA regions cannot be registered."""
        self._require_enabled()
        if self._cuda is None:
            raise Unsupported(CUDA_UNSUPPORTED_MESSAGE)
        return self._cuda

    def unregister(self, name: str = "") -> None:
        """Forget one system region, or all when `name` is empty (unknown names are ignored,
        as Triton does, so clean-up code may unregister unconditionally)."""
        self._require_enabled()
        self._forget(name, Region)

    def unregister_cuda(self, name: str = "") -> None:
        """As `unregister`, for CUDA regions; answers even where CUDA is unsupported (a Triton
        built without GPU support does too), since clients call it to clean up."""
        self._forget(name, CudaRegion)

    def status(self, name: str = "") -> list[Region]:
        """One system region, or every one when `name` is empty."""
        self._require_enabled()
        return self._records(name, Region)

    def cuda_status(self, name: str = "") -> list[CudaRegion]:
        """One CUDA region, or every one when `name` is empty (none where unsupported)."""
        return self._records(name, CudaRegion)

    def check(self, location: TensorLocation) -> None:
        """Raise unless `location` names a registered region and lies inside it."""
        self._require_enabled()
        with self._lock:
            self._resolve(location)

    def read_into(self, location: TensorLocation, out: memoryview) -> None:
        """Copy the `location.byte_size` bytes at `location` into `out`."""
        self._require_enabled()
        with self._lock:
            memory = self._resolve(location)
            memory.read_into(location.offset, out[: location.byte_size])

    def write(self, location: TensorLocation, data: bytes | memoryview) -> None:
        """Copy `data` (at most `location.byte_size` bytes) to the start of `location`."""
        self._require_enabled()
        with self._lock:
            self._resolve(location).write(location.offset, memoryview(data).cast("B"))

    def close(self) -> None:
        """Close every region (at shutdown)."""
        with self._lock:
            for _, memory in self._regions.values():
                memory.close()
            self._regions.clear()

    def _require_enabled(self) -> None:
        if not self._enabled:
            raise Unsupported(DISABLED_MESSAGE)

    def _require_unused(self, name: str) -> None:
        """Checked before opening too, so a taken name is reported as such, whatever the rest."""
        with self._lock:
            self._require_new(name)

    def _require_new(self, name: str) -> None:
        if name in self._regions:
            raise AlreadyExists(f"shared memory region '{name}' is already registered")

    def _add(self, record: Region | CudaRegion, memory: RegionMemory) -> None:
        with self._lock:
            try:
                self._require_new(record.name)
                self._require_room(record.byte_size)
            except (InvalidArgument, AlreadyExists):
                memory.close()
                raise
            self._regions[record.name] = (record, memory)

    def _require_room(self, byte_size: int) -> None:
        limits = self._limits
        if len(self._regions) >= limits.max_regions:
            raise InvalidArgument(
                f"{limits.max_regions} shared memory regions are registered, the limit "
                f"({REGIONS_FLAG}); unregister one first"
            )
        total = byte_size + sum(record.byte_size for record, _ in self._regions.values())
        if total > limits.max_bytes:
            raise PayloadTooLarge(
                f"registering {byte_size} bytes would take the shared memory regions past the "
                f"{limits.max_bytes}-byte limit ({BYTES_FLAG})"
            )

    def _forget(self, name: str, kind: type[Region | CudaRegion]) -> None:
        with self._lock:
            names = [name] if name else list(self._regions)
            for each in names:
                entry = self._regions.get(each)
                if entry is not None and isinstance(entry[0], kind):
                    del self._regions[each]
                    entry[1].close()

    def _records(self, name: str, kind: type[_Record]) -> list[_Record]:
        with self._lock:
            records = [r for r, _ in self._regions.values() if isinstance(r, kind)]
        if not name:
            return records
        found = [r for r in records if r.name == name]
        if not found:
            label = "CUDA " if kind is CudaRegion else ""
            raise NotFound(f"no {label}shared memory region named '{name}' is registered")
        return found

    def _resolve(self, location: TensorLocation) -> RegionMemory:
        """The memory of a location checked to lie inside its region."""
        entry = self._regions.get(location.region)
        if entry is None:
            raise NotFound(f"no shared memory region named '{location.region}' is registered")
        region, memory = entry
        if location.offset + location.byte_size > region.byte_size:
            raise InvalidArgument(
                f"offset {location.offset} + byte size {location.byte_size} runs past the end "
                f"of shared memory region '{region.name}' ({region.byte_size} bytes)"
            )
        return memory


DISABLED: Final = SharedMemoryRegistry(enabled=False)


def tensor_location(parameters: Mapping[str, Any], kind: str, name: str) -> TensorLocation | None:
    """The shared-memory location named by a tensor's parameters, or None if it names none.

    `kind` ("input" or "output") and `name` name the tensor in errors.
    """
    if REGION not in parameters:
        if BYTE_SIZE in parameters or OFFSET in parameters:
            raise InvalidArgument(f"{kind} '{name}': '{BYTE_SIZE}' needs '{REGION}'")
        return None
    tensor = f"{kind} '{name}'"  # only here: most tensors are not in shared memory
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
    model: str = "",
) -> Array:
    """An input tensor copied out of shared memory (the array owns its bytes)."""
    registry.check(location)  # before allocating: byte_size is the client's word until checked
    storage: Any = np.empty(location.byte_size, dtype=np.uint8)  # unlike bytearray, no zero-fill
    buffer = memoryview(storage)
    registry.read_into(location, buffer)
    return array_from_bytes(buffer, name, datatype, shape, model)


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


def _require_name(name: str) -> None:
    if not name:
        raise InvalidArgument("a shared memory region needs a non-empty name")


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
