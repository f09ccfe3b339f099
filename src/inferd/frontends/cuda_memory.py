"""Device memory that clients share through CUDA IPC handles (the CUDA shared-memory extension).

A client allocates device memory, exports it with `cudaIpcGetMemHandle`, and registers the
64-byte handle with the server; the server maps it with `cudaIpcOpenMemHandle` and copies
tensors between that memory and host arrays. The bindings come from cuda-python (the optional
`inferd[cuda]` extra), imported only when shared memory is enabled: without them, or without a
CUDA device, `load()` returns None and the registry answers "not supported".

Copies go through a stream owned by each region and are waited for before returning: a client
in another process reads an output as soon as the response arrives, and CUDA orders nothing
across processes for it.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
from types import ModuleType
from typing import Any, Final

import numpy as np

from inferd.core.errors import Internal, InvalidArgument

logger = logging.getLogger(__name__)

IPC_HANDLE_BYTES: Final = 64  # CUDA_IPC_HANDLE_SIZE
# (runtime, driver) module names: cuda-python >= 12.6 first, then the older layout.
_BINDINGS: Final = (
    ("cuda.bindings.runtime", "cuda.bindings.driver"),
    ("cuda.cudart", "cuda.cuda"),
)


class CudaError(Exception):
    """A CUDA call answered an error; the message names the call and the error."""


class DeviceMemory:
    """One opened IPC handle: `byte_size` usable bytes at device address `pointer`."""

    def __init__(self, runtime: CudaRuntime, device_id: int, pointer: int, stream: Any) -> None:
        self._runtime = runtime
        self._device_id = device_id
        self._pointer = pointer
        self._stream = stream

    def read_into(self, position: int, out: memoryview) -> None:
        """Copy `len(out)` bytes starting `position` bytes into the memory to `out`."""
        host: Any = np.frombuffer(out, dtype=np.uint8)
        self._copy(host.ctypes.data, self._pointer + position, len(out), "read")

    def write(self, position: int, data: memoryview) -> None:
        """Copy `data` to `position` bytes into the memory."""
        host: Any = np.frombuffer(data, dtype=np.uint8)
        self._copy(self._pointer + position, host.ctypes.data, len(data), "write")

    def close(self) -> None:
        """Unmap the handle; a failure is logged, since the region is forgotten either way."""
        try:
            self._runtime.call("cudaSetDevice", self._device_id)
            self._runtime.call("cudaIpcCloseMemHandle", self._pointer)
            self._runtime.call("cudaStreamDestroy", self._stream)
        except CudaError as exc:
            logger.warning("closing CUDA shared memory on device %d: %s", self._device_id, exc)
            self._runtime.cudart.cudaGetLastError()

    def _copy(self, destination: int, source: int, count: int, what: str) -> None:
        if not count:
            return
        kind = self._runtime.cudart.cudaMemcpyKind.cudaMemcpyDefault
        try:
            self._runtime.call("cudaSetDevice", self._device_id)
            self._runtime.call("cudaMemcpyAsync", destination, source, count, kind, self._stream)
            self._runtime.call("cudaStreamSynchronize", self._stream)
        except CudaError as exc:
            raise Internal(f"unable to {what} CUDA shared memory: {exc}") from None


class CudaRuntime:
    """The CUDA runtime (and the one driver call it lacks) of cuda-python's bindings."""

    def __init__(self, cudart: ModuleType, driver: ModuleType, device_count: int) -> None:
        self.cudart = cudart
        self._driver = driver
        self.device_count = device_count

    def call(self, function: str, *arguments: Any) -> Any:
        """`cudart.function(*arguments)` without its error code; raises `CudaError` on one."""
        return _unwrap(function, getattr(self.cudart, function)(*arguments))

    def open(self, raw_handle: bytes, device_id: int, byte_size: int) -> DeviceMemory:
        """Map a client's `cudaIpcMemHandle_t` on `device_id`; it must span `byte_size` bytes."""
        if len(raw_handle) != IPC_HANDLE_BYTES:
            raise InvalidArgument(
                f"a CUDA IPC handle is {IPC_HANDLE_BYTES} bytes, not {len(raw_handle)}"
            )
        if not 0 <= device_id < self.device_count:
            raise InvalidArgument(
                f"CUDA device {device_id} does not exist: this server sees "
                f"{self.device_count} device(s)"
            )
        handle = self.cudart.cudaIpcMemHandle_t()
        # cuda-bindings 13 dropped the handle's `reserved` field; its bytes are at getPtr().
        ctypes.memmove(handle.getPtr(), raw_handle, IPC_HANDLE_BYTES)
        try:
            self.call("cudaSetDevice", device_id)
            flags = self.cudart.cudaIpcMemLazyEnablePeerAccess
            pointer = int(self.call("cudaIpcOpenMemHandle", handle, flags))
        except CudaError as exc:
            self.cudart.cudaGetLastError()  # IPC errors are not sticky: clear and go on
            raise InvalidArgument(f"unable to open the CUDA IPC handle: {exc}") from None
        try:
            self._require_span(pointer, byte_size)
            stream = self.call("cudaStreamCreate")
        except BaseException:
            self.cudart.cudaIpcCloseMemHandle(pointer)
            raise
        return DeviceMemory(self, device_id, pointer, stream)

    def _require_span(self, pointer: int, byte_size: int) -> None:
        try:
            base, size = _unwrap("cuMemGetAddressRange", self._driver.cuMemGetAddressRange(pointer))
        except CudaError as exc:
            raise InvalidArgument(f"unable to size the CUDA allocation: {exc}") from None
        available = int(base) + int(size) - pointer
        if byte_size > available:
            raise InvalidArgument(
                f"byte_size {byte_size} exceeds the {available} bytes of the CUDA allocation"
            )


def load() -> CudaRuntime | None:
    """The CUDA runtime when cuda-python is installed and sees a device, else None (logged)."""
    bindings = _import_bindings()
    if bindings is None:
        logger.info("CUDA shared memory is off: cuda-python is not installed ('inferd[cuda]')")
        return None
    cudart, driver = bindings
    try:
        count = int(_unwrap("cudaGetDeviceCount", cudart.cudaGetDeviceCount()))
    # Without a driver library cuda-python raises (RuntimeError) instead of returning a code.
    except Exception as exc:
        logger.info("CUDA shared memory is off: %s", exc)
        return None
    if count == 0:
        logger.info("CUDA shared memory is off: no CUDA device")
        return None
    return CudaRuntime(cudart, driver, count)


def _import_bindings() -> tuple[ModuleType, ModuleType] | None:
    """(runtime, driver) modules of cuda-python, in whichever layout is installed."""
    for runtime_name, driver_name in _BINDINGS:
        try:
            return importlib.import_module(runtime_name), importlib.import_module(driver_name)
        except ImportError:
            continue
    return None


def _unwrap(function: str, result: tuple[Any, ...]) -> Any:
    """cuda-python returns (error, *values): the values (one unpacked), or CudaError."""
    error, *values = result
    if int(error) != 0:  # cudaSuccess and CUDA_SUCCESS are both 0
        raise CudaError(f"{function} failed with {getattr(error, 'name', error)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)
