"""Giving the event loop its turn after it ran a batch itself.

A batch run on the loop (`RunsOnLoop`, one usable CPU) holds it for the batch's whole
computation: the answers of the batch before wait to be written, and requests that arrived
wait unread in their sockets. Were the worker to form its next batch at once, it would take
only what was queued before, run it at once (those requests' delay ran out meanwhile), and
the clients it just answered would hear back one batch later, so their next requests miss
that batch too: under load the batches shrink to a fraction of the cap. So the worker first
lets the loop run until a pass through it finds next to nothing else to do, for a few passes
at most.
"""

from __future__ import annotations

import asyncio
import time

# A pass through the loop that took less ran nothing but the waiting task and an I/O poll.
QUIET_PASS_NS = 20_000
# An answer reaches its socket in one pass, an arrival its queue in two (read, then its
# handler's task runs): three take both in. More would only hold the next batch back where
# the loop stays busy for other reasons (grpc's threads taking turns with it on the CPU: with
# eight, gRPC's batches shrank from 4.7 to 4.1 requests).
MAX_PASSES = 3


async def let_loop_catch_up() -> None:
    """Yield to the event loop until one pass through it is quiet, or `MAX_PASSES` went by.
    A pass: the callbacks ready when it began and one poll for I/O (each `sleep(0)`)."""
    for _ in range(MAX_PASSES):
        start = time.monotonic_ns()
        await asyncio.sleep(0)
        if time.monotonic_ns() - start < QUIET_PASS_NS:
            return
