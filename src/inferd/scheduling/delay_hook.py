"""Triton's scheduler test hooks: hold batch formation back until N requests are queued.

Triton's QA (`qa/L0_batcher`, `qa/L0_sequence_batcher`) sends requests one after another
and then checks which batches ran. To make those batches independent of timing, it starts
the server with `TRITONSERVER_DELAY_SCHEDULER=N`: a scheduler forms no batch until N
requests are queued, then works normally for the rest of its life. The sequence batcher
also honours `TRITONSERVER_BACKLOG_DELAY_SCHEDULER=M` while it holds back: it waits, in
addition, until M requests of sequences without a slot sit in its backlog.

Both are read once, when a scheduler is built; unset, 0 or not a number, they are off and
cost nothing. Once a gate has opened the scheduler drops it.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

DELAY_VARIABLE = "TRITONSERVER_DELAY_SCHEDULER"
BACKLOG_VARIABLE = "TRITONSERVER_BACKLOG_DELAY_SCHEDULER"

# How often a sequence batcher's held-back worker looks at the counts again (Triton's 10 ms):
# a request that joins a backlogged sequence wakes no worker.
POLL_NS = 10_000_000


def _count(variable: str) -> int:
    """The variable's request count; 0 (off) when unset, empty, negative or not a number."""
    try:
        return max(0, int(os.environ.get(variable, "").strip() or 0))
    except ValueError:
        logger.warning("%s=%r is not a number of requests; ignored", variable, os.environ[variable])
        return 0


class DelayGate:
    """Closed until `count` requests are queued (and `backlog` backlogged); once open, it stays
    open, and every scheduler worker sharing it goes on."""

    __slots__ = ("_backlog", "_count", "_open", "_what")

    def __init__(self, what: str, count: int, backlog: int = 0) -> None:
        self._what = what
        self._count = count
        self._backlog = backlog
        self._open = False

    def holds(self, queued: int, backlogged: int = 0) -> bool:
        """True while batch formation must still wait, given the requests queued now."""
        if self._open:
            return False
        if queued < self._count or backlogged < self._backlog:
            return True
        self._open = True
        logger.debug(
            "%s goes on: %d queued requests (waited for %d), %d in the backlog",
            self._what,
            queued,
            self._count,
            backlogged,
        )
        return False


def delay_gate(what: str, with_backlog: bool = False) -> DelayGate | None:
    """The gate `TRITONSERVER_DELAY_SCHEDULER` asks for (None: unset); `with_backlog` adds
    `TRITONSERVER_BACKLOG_DELAY_SCHEDULER` (the sequence batcher's direct strategy only)."""
    count = _count(DELAY_VARIABLE)
    if not count:
        return None
    logger.debug("Delaying %s until %d queued requests...", what, count)
    backlog = _count(BACKLOG_VARIABLE) if with_backlog else 0
    if backlog:
        logger.info("Delaying %s until %d backlog queued requests...", what, backlog)
    return DelayGate(what, count, backlog)
