"""Where traces go: files in Triton's trace format, written off the event loop, or the log.

Triton's trace file is a JSON array; each trace is an object naming its model and an object
with its timestamps, both under the trace's id. With `log_frequency` N > 0 every N traces go
to `<trace_file>.<index>` (index from 0); with 0 the traces collect in memory and go to
`<trace_file>` when the file setting changes or the server stops.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

logger = logging.getLogger("inferd.trace")

Trace = list[dict[str, Any]]  # the objects one trace adds to the array


class TraceOutput:
    """Traces of one trace_file and log_frequency; `add` is called on the event loop."""

    def __init__(self, trace_file: str, log_frequency: int) -> None:
        self.trace_file = trace_file
        self.log_frequency = log_frequency
        self._pending: list[dict[str, Any]] = []
        self._collected = 0
        self._index = 0
        self._writer: ThreadPoolExecutor | None = None

    def add(self, trace: Trace) -> None:
        if not self.trace_file:
            logger.info("trace %s", json.dumps(trace, separators=(",", ":")))
            return
        self._pending.extend(trace)
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

    def _take(self) -> list[dict[str, Any]]:
        taken, self._pending = self._pending, []
        return taken

    def _submit(self, path: str, objects: list[dict[str, Any]]) -> None:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="inferd-trace")
        self._writer.submit(_write, path, objects)


def _write(path: str, objects: list[dict[str, Any]]) -> None:
    try:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(objects, out, indent=0)
    except OSError as exc:
        logger.error("cannot write the trace file %s: %s", path, exc)
