"""Which sequences' next steps form an instance's next batch, for Triton's two strategies.

- Direct: row i of the batch is slot i. A batch spans the slots up to the highest with a
  ready step and holds the next step of every ready slot whose shapes match the lowest ready
  slot's; the other rows are sent as padding (READY false), as Triton does, so a model that
  keeps state per batch row sees each sequence in the same row every time.
- Oldest: the instance's slots are candidate sequences; a batch takes the oldest next steps,
  one per sequence, no padding.

Each returns the rows to run now, or None and the time to look again (None: on arrival).
"""

from __future__ import annotations

from typing import Any

from inferd.core.types import Array
from inferd.scheduling.sequence_settings import SequenceSettings
from inferd.scheduling.sequence_slots import SequenceRecord

Rows = list[SequenceRecord | None]  # None: a padding row (direct only)
Choice = tuple[Rows | None, int | None]


def _ready(slots: list[SequenceRecord | None]) -> list[SequenceRecord]:
    return [s for s in slots if s is not None and s.steps and not s.running]


def ready_count(slots: list[SequenceRecord | None]) -> int:
    """The sequences with a next step waiting to run."""
    return len(_ready(slots))


def _matching(
    ready: list[SequenceRecord], initial: dict[str, Array], limit: int
) -> list[SequenceRecord]:
    """Up to `limit` of `ready` (oldest next step first) whose shapes match the oldest's."""
    ready.sort(key=lambda s: s.steps[0].enqueued_ns)
    if len(ready) == 1 or limit == 1:
        return ready[:1]
    lead: Any = ready[0].head_shapes(initial)
    return [s for s in ready if s.head_shapes(initial) == lead][:limit]


def choose_rows(
    slots: list[SequenceRecord | None],
    settings: SequenceSettings,
    initial: dict[str, Array],
    now_ns: int,
    flush: bool,
) -> Choice:
    """The rows of an instance's next batch by the settings' strategy; `flush` (stopping)
    takes what is ready without waiting."""
    ready = _ready(slots)
    if not ready:
        return None, None
    if settings.strategy == "direct":
        return _direct_rows(ready, len(slots), settings, initial, now_ns, flush)
    return _oldest_rows(ready, settings, initial, now_ns, flush)


def _direct_rows(
    ready: list[SequenceRecord],
    slot_count: int,
    settings: SequenceSettings,
    initial: dict[str, Array],
    now_ns: int,
    flush: bool,
) -> Choice:
    # As Triton: the lowest ready slot's shapes lead, and the batch spans every ready slot, a
    # slot whose next step has other shapes sent as padding this time.
    ready.sort(key=lambda s: s.index)
    lead: Any = ready[0].head_shapes(initial)
    chosen = [s for s in ready if s is ready[0] or s.head_shapes(initial) == lead]
    wanted = settings.minimum_slot_utilization * slot_count
    if not flush and len(ready) < wanted:
        oldest = min(ready, key=lambda s: s.steps[0].enqueued_ns)
        deadline = _deadline(oldest, settings)
        if now_ns < deadline:
            return None, deadline
    rows: Rows = [None] * (ready[-1].index + 1)
    for sequence in chosen:
        rows[sequence.index] = sequence
    return rows, None


def _oldest_rows(
    ready: list[SequenceRecord],
    settings: SequenceSettings,
    initial: dict[str, Array],
    now_ns: int,
    flush: bool,
) -> Choice:
    max_rows = max(1, settings.max_batch_size)
    chosen = _matching(ready, initial, max_rows)
    if flush or len(chosen) >= max_rows:
        return list(chosen), None
    cut = max((size for size in settings.preferred_batch_sizes if size <= len(chosen)), default=0)
    if cut:
        return list(chosen[:cut]), None
    deadline = _deadline(chosen[0], settings)
    if now_ns >= deadline:
        return list(chosen), None
    return None, deadline


def _deadline(oldest: SequenceRecord, settings: SequenceSettings) -> int:
    """When the batch led by `oldest`'s next step stops waiting for more sequences."""
    return oldest.steps[0].enqueued_ns + settings.max_queue_delay_ns
