"""Triton's preferred batch sizes: where a forming batch is cut, and where a batch that
grows while it waits for its resources stops."""

from __future__ import annotations

from inferd.scheduling.queue import Queued


def preferred_growth(batch: list[Queued], grown_from: int, preferred: tuple[int, ...]) -> int:
    """Where a growing batch stops: after the largest preferred size that the requests added
    from `grown_from` on reach (0: none reached)."""
    rows = sum(queued.rows for queued in batch[:grown_from])
    cut = 0
    for count in range(grown_from, len(batch)):
        rows += batch[count].rows
        if rows in preferred:
            cut = count + 1
    return cut


def preferred_cut(batch: list[Queued], preferred: tuple[int, ...]) -> int:
    """How many requests from the head to send now by Triton's preferred-size rules (0: wait).

    The largest preferred size reached wins. Failing that, a batch that the next request
    would push past the largest preferred size goes without it (that request then waits for
    its own delay), and a head request at or past that size alone goes at once.
    """
    if not preferred:
        return 0
    largest = preferred[-1]
    rows = 0
    cut = 0
    for count, queued in enumerate(batch, 1):
        if rows and not cut and rows + queued.rows > largest:
            return count - 1
        rows += queued.rows
        if rows in preferred:
            cut = count
    return cut or (len(batch) if rows >= largest else 0)
