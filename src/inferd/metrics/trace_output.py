"""Where traces go: files in Triton's trace format, written off the event loop, or the log.

Triton's trace file is a JSON array; each trace is an object naming its model (and its
request id and parent trace where it has them), an object with its timestamps in time order
(level TIMESTAMPS) and one object per tensor (level TENSORS), all under the trace's id. With
`log_frequency` N > 0 every N traces go to `<trace_file>.<index>` (index from 0); with 0 the
traces collect in memory and go to `<trace_file>` when the file setting changes or the server
stops.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from inferd.metrics.trace_tensors import TracedTensor, tensor_object

logger = logging.getLogger("inferd.trace")

# (id, parent id (0: none), request id, model, version, (name, ns) of each mark (ns 0: not
# reached; none when timestamps are not traced), tensors): turned into Triton's objects by the
# writer, so the request path only makes a tuple.
Trace = tuple[int, int, str, str, str, tuple[tuple[str, int], ...], Sequence[TracedTensor]]


def trace_objects(trace: Trace) -> list[dict[str, Any]]:
    """The objects of one trace in Triton's trace file."""
    trace_id, parent_id, request_id, model, version, marks, tensors = trace
    head: dict[str, Any] = {
        "id": trace_id,
        "model_name": model,
        "model_version": int(version) if version.isdigit() else version,
    }
    if request_id:
        head["request_id"] = request_id
    if parent_id:
        head["parent_id"] = parent_id
    objects = [head]
    if marks:
        reached = sorted((mark for mark in marks if mark[1]), key=lambda mark: mark[1])
        stamps = [{"name": name, "ns": ns} for name, ns in reached]
        objects.append({"id": trace_id, "timestamps": stamps})
    objects.extend(tensor_object(trace_id, tensor) for tensor in tensors)
    return objects


class TraceOutput:
    """Traces of one trace_file and log_frequency; `add` is called on the event loop."""

    def __init__(self, trace_file: str, log_frequency: int) -> None:
        self.trace_file = trace_file
        self.log_frequency = log_frequency
        self._pending: list[Trace] = []
        self._collected = 0
        self._index = 0
        self._writer: ThreadPoolExecutor | None = None

    def add(self, trace: Trace) -> None:
        if not self.trace_file:
            logger.info("trace %s", json.dumps(trace_objects(trace), separators=(",", ":")))
            return
        self._pending.append(trace)
        self._collected += 1
        if self.log_frequency and self._collected % self.log_frequency == 0:
            path = f"{self.trace_file}.{self._index}"
            self._index += 1
            self._submit(path, self._take())

    def close(self) -> None:
        """Write what is collected (log_frequency 0) and wait for every write to finish."""
        if self.trace_file and self._pending and not self.log_frequency:
            self._submit(self.trace_file, self._take())
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    def _take(self) -> list[Trace]:
        taken, self._pending = self._pending, []
        return taken

    def _submit(self, path: str, traces: list[Trace]) -> None:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="inferd-trace")
        self._writer.submit(_write, path, traces)


def _write(path: str, traces: list[Trace]) -> None:
    try:
        # One dumps, without indent: only that takes the C encoder (and holds the GIL least).
        text = json.dumps([item for trace in traces for item in trace_objects(trace)])
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        logger.error("cannot write the trace file %s: %s", path, exc)
