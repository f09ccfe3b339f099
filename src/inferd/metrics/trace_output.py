"""Where traces go: files in Triton's trace format, written off the event loop, or the log.

Triton's trace file is a JSON array; each trace is an object naming its model (and its
request id and parent trace where it has them), an object with its timestamps in time order
(level TIMESTAMPS) and one object per tensor (level TENSORS), all under the trace's id. With
`log_frequency` N > 0 every N traces go to `<trace_file>.<index>` (index from 0); with 0 the
traces collect in memory and go to `<trace_file>` when the file setting changes or the server
stops.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from inferd.core.types import Timestamps
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


# The marks of the frontend that read a request, as Triton's frontends name them: reading
# began, reading ended, sending the answer began, sending ended.
_WIRE = {
    "HTTP": ("HTTP_RECV_START", "HTTP_RECV_END", "HTTP_SEND_START", "HTTP_SEND_END"),
    "GRPC": ("GRPC_WAITREAD_START", "GRPC_WAITREAD_END", "GRPC_SEND_START", "GRPC_SEND_END"),
}


def trace_marks(t: Timestamps, start: int) -> tuple[tuple[str, int], ...]:
    """The request's marks (0: not reached); `start`: it entered the engine. A response is
    complete as the engine hands it over: each one where the frontend keeps them all, else a
    decoupled request's first, else the one answer, as the request leaves."""
    responses = t.responses or (t.first_response or t.sent,)
    wire = _WIRE.get(t.protocol)
    return (
        *(((wire[0], t.received), (wire[1], t.read or t.received)) if wire else ()),
        ("REQUEST_START", start),
        ("QUEUE_START", t.queued),
        ("COMPUTE_START", t.compute_start),
        ("COMPUTE_INPUT_END", t.compute_input_end),
        ("COMPUTE_OUTPUT_START", t.compute_output_start),
        ("COMPUTE_END", t.compute_end),
        *(("INFER_RESPONSE_COMPLETE", ns) for ns in responses),
        ("REQUEST_END", t.sent),
        *(((wire[2], t.send_start), (wire[3], t.send_end)) if wire else ()),
    )


class TraceOutput:
    """Where the traces of one trace_file go ("": the log); called on the event loop."""

    def __init__(self, trace_file: str) -> None:
        self.trace_file = trace_file
        self._whole: list[Trace] = []  # those for `trace_file` itself
        self._closed = False
        self._index = 0
        self._writer: ThreadPoolExecutor | None = None

    def log(self, trace: Trace) -> None:
        logger.info("trace %s", json.dumps(trace_objects(trace), separators=(",", ":")))

    def to_index(self, traces: list[Trace]) -> None:
        """Write `traces` to the next `<trace_file>.<index>`."""
        path = f"{self.trace_file}.{self._index}"
        self._index += 1
        self._submit(path, traces)

    def to_file(self, traces: list[Trace]) -> None:
        """Add `traces` to `trace_file`, written when closed (again, for traces added later)."""
        self._whole.extend(traces)
        if self._closed:
            self._submit(self.trace_file, list(self._whole))

    def close(self) -> None:
        """Write `trace_file` and wait for every write to finish."""
        self._closed = True
        if self._whole:
            self._submit(self.trace_file, list(self._whole))
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    def _submit(self, path: str, traces: list[Trace]) -> None:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="inferd-trace")
        self._writer.submit(_write, path, traces)


def _write(path: str, traces: list[Trace]) -> None:
    # Written under a hidden name, then renamed: whoever reads the file (a test polling for
    # it, `tail`, Triton's trace_summary.py) never finds it partly written.
    folder, name = os.path.split(path)
    partial = os.path.join(folder, f".{name}.{os.getpid()}.partial")
    try:
        # One dumps, without indent: only that takes the C encoder (and holds the GIL least).
        text = json.dumps([item for trace in traces for item in trace_objects(trace)])
        with open(partial, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(partial, path)
    except OSError as exc:
        logger.error("cannot write the trace file %s: %s", path, exc)
        with contextlib.suppress(OSError):
            os.unlink(partial)
