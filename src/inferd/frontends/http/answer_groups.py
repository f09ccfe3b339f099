"""Express answers written in groups while other requests are in flight.

A client thread waiting for its answers sleeps between them, and the server's write that lands
an answer in its socket wakes it. On the 2-core VMs measured, that wake-up is an interrupt
sent from inside the server's `write`, and it costs the server's CPU about 60 us (softirq
time), several times the write itself. Where the loop runs each request's model itself (one
usable CPU, batching off: `scheduling/relay.py`), answers leave one per model run, hundreds
of microseconds apart, and each one wakes its client anew.

So an answer written while other express requests are in flight (read, not yet answered) is
held until the group is complete (`GROUP` answers written) or the loop's current pass ends,
whichever comes first, and then they all leave back to back: a client woken by the first finds
the others already there. An answer so waits at most for `GROUP - 1` other requests' turns on
the loop, and never past the pass it was written in; one alone in flight (a client at
concurrency 1) leaves at once. Nothing else its connection writes may overtake it: the protocol
has the held answers written before it writes there itself or closes it (`release`), and a
request pipelined behind it is answered by a task that starts after the pass ends.
"""

from __future__ import annotations

import asyncio

from inferd.core.running_loop import running_loop

# Answers that leave together at most. With one CPU, batching off, `perf_analyzer` at
# concurrency 32 (docs/benchmarks.md): 1.03 interrupts to the client's CPU per request with
# none held; 0.55-0.63 in pairs; 0.33-0.36 in fours, the throughput 3-8 % above pairs; 0.21 in
# eights, no faster than fours. Fours keep most of the gain at half of eights' wait.
GROUP = 4


class AnswerGroups:
    """One server's held express answers, and how many express requests are in flight."""

    __slots__ = ("_end_of_pass_due", "_held", "in_flight")

    def __init__(self) -> None:
        self.in_flight = 0  # express requests read whole and not yet ended
        self._held: list[tuple[asyncio.Transport, bytes]] = []  # in the order written
        self._end_of_pass_due = False

    def write(self, transport: asyncio.Transport, answer: bytes) -> None:
        """Write `answer` to `transport`: held while other requests are in flight and the
        group has room; otherwise at once, after those held."""
        held = self._held
        if self.in_flight > 1 and len(held) < GROUP - 1:
            held.append((transport, answer))
            if not self._end_of_pass_due:
                self._end_of_pass_due = True
                running_loop().call_soon(self._end_of_pass)
            return
        if held:
            self._write_held()
        transport.write(answer)

    def release(self, transport: asyncio.Transport) -> None:
        """Write the held answers now if one of them is `transport`'s."""
        for held_transport, _ in self._held:
            if held_transport is transport:
                self._write_held()
                return

    def _end_of_pass(self) -> None:
        self._end_of_pass_due = False
        self._write_held()

    def _write_held(self) -> None:
        held, self._held = self._held, []
        for transport, answer in held:
            if not transport.is_closing():  # its client went away while it was held
                transport.write(answer)
