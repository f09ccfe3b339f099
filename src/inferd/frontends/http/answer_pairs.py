"""Express answers written in pairs while other requests are in flight.

A client thread waiting for its answers sleeps between them, and the server's write that lands
an answer in its socket wakes it. On the 2-core VMs measured, that wake-up is an interrupt
sent from inside the server's `write`, and it costs the server's CPU about 60 us (softirq
time), several times the write itself. Where the loop runs each request's model itself (one
usable CPU, batching off: `scheduling/relay.py`), answers leave one per model run, hundreds
of microseconds apart, and each one wakes its client anew.

So an answer written while other express requests are in flight (read, not yet answered) is
held until the next answer is written or the loop's current pass ends, whichever comes first.
The two answers then leave back to back, and a client woken by the first finds the second
already there. An answer so waits at most for one other request's turn on the loop; one alone
in flight (a client at concurrency 1) leaves at once. Nothing else its connection writes may
overtake it: the protocol releases a held answer before it handles that connection's next
bytes or shuts it down (`release`, `flush`).
"""

from __future__ import annotations

import asyncio


class AnswerPairs:
    """One server's held express answer, and how many express requests are in flight."""

    __slots__ = ("_end_of_pass_due", "_held", "in_flight")

    def __init__(self) -> None:
        self.in_flight = 0  # express requests read whole and not yet ended
        self._held: tuple[asyncio.Transport, bytes] | None = None
        self._end_of_pass_due = False

    def write(self, transport: asyncio.Transport, answer: bytes) -> None:
        """Write `answer` to `transport`, after the held one if there is one; hold it instead
        while other requests are in flight and none is held."""
        held = self._held
        if held is not None:
            self._held = None
            _write(*held)
        elif self.in_flight > 1:
            self._held = (transport, answer)
            if not self._end_of_pass_due:
                self._end_of_pass_due = True
                asyncio.get_running_loop().call_soon(self._end_of_pass)
            return
        transport.write(answer)

    def release(self, transport: asyncio.Transport) -> None:
        """Write the held answer now if it is `transport`'s."""
        held = self._held
        if held is not None and held[0] is transport:
            self._held = None
            _write(*held)

    def flush(self) -> None:
        """Write the held answer now, whoever's it is."""
        held = self._held
        if held is not None:
            self._held = None
            _write(*held)

    def _end_of_pass(self) -> None:
        self._end_of_pass_due = False
        self.flush()


def _write(transport: asyncio.Transport, answer: bytes) -> None:
    if not transport.is_closing():  # its client went away while it was held
        transport.write(answer)
