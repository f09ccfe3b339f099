"""Shared memory for the tensors of a decoupled model's streamed responses, from its worker
process to the server: one segment, in which each response's tensors take a region (first-
fit, as a BLS call's do: `call_memory.py`) until the server copied them out.

The server copies a response out as soon as its reader takes the `Streamed` message, before
handing it to its request (whose client may be slow, or gone), in the order they were sent;
then it stores that response's number in the segment's first word. So the worker frees every
region up to that number without a message back, whatever became of the request (cancelled,
failed, ended). A dead worker's segment goes with it (`transport.py`). The regions in use are
bounded (`WINDOW`): a send beyond waits for the server to catch up, as a send into a full
pipe would, so a fast model cannot grow the segment without end.

A small response (`IN_BAND` bytes of tensors or fewer) is pickled with its message instead:
below that, placing it costs more than copying it through the pipe (measured with
`benchmarks/ipc_roundtrip.py`: 1 KiB responses streamed 1.4-2x slower through the segment;
the two meet between 32 and 64 KiB).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from inferd.backends.python.call_memory import CallMemory
from inferd.backends.python.protocol import Streamed, WireError
from inferd.backends.python.transport import Segment
from inferd.core.types import Array

WINDOW = 16 << 20  # bytes of responses the server has not copied out yet, beyond which sends wait
IN_BAND = 32 << 10  # bytes of a response's tensors up to which they are pickled with it
_HEADER = 64  # the first word (the number of the last response copied out), aligned
_WAIT_S = 0.001  # how often a send waiting for room looks at that word


class StreamWriter:
    """The worker's side: sends each response with its tensors in the segment."""

    def __init__(self, segment: Segment, send: Callable[[object], None]) -> None:
        self._memory = CallMemory(segment, _HEADER)
        self._segment = segment  # its first word is written by the server
        self._send = send
        self._lock = threading.Lock()  # one order for the numbers, the regions and the sends
        self._sent = 0  # the number of the last response put in the segment
        self._held: deque[tuple[int, int]] = deque()  # (number, bytes) of the regions in use
        self._held_bytes = 0
        self._stopped = False  # the server closed the pipe: nothing will free a region

    def stop(self) -> None:
        self._stopped = True

    def send(
        self, key: int, outputs: dict[str, Array] | None, error: WireError | None, final: bool
    ) -> None:
        """Raises OSError when the server is gone."""
        nbytes = sum(array.nbytes for array in outputs.values()) if outputs else 0
        with self._lock:
            if outputs is None or nbytes <= IN_BAND:  # the final flag alone, an error, or small
                self._send(Streamed(key, outputs, error, final))
                return
            self._make_room(nbytes)
            number = self._sent + 1
            size, placed = self._memory.put(number, outputs)
            try:
                self._send(Streamed(key, None, error, final, size, placed, number))
            except BaseException:
                self._memory.release(number)
                raise
            self._sent = number
            self._held.append((number, nbytes))
            self._held_bytes += nbytes

    def _make_room(self, nbytes: int) -> None:
        """Free what the server copied out; wait while the window is full (a response larger
        than the window goes alone)."""
        while True:
            copied = self._segment.load_word()
            while self._held and self._held[0][0] <= copied:
                number, held = self._held.popleft()
                self._memory.release(number)
                self._held_bytes -= held
            if not self._held or self._held_bytes + nbytes <= WINDOW:
                return
            if self._stopped:
                raise OSError("the server closed the pipe")
            time.sleep(_WAIT_S)


class StreamReader:
    """The server's side: takes a response's tensors out of the segment."""

    def __init__(self, segment: Segment) -> None:
        self._segment = segment

    def outputs(self, message: Streamed) -> dict[str, Array] | None:
        """Copies of the response's tensors; their region is free from here."""
        if message.placed is None:
            return message.outputs
        arrays = self._segment.read(message.size, message.placed, copy=True)
        self._segment.store_word(message.number)
        return arrays
