"""Trace files as `TraceOutput` writes them, read back while they are being written."""

from __future__ import annotations

import json
import time
from pathlib import Path

from inferd.metrics.trace_output import TraceOutput

MARKS = tuple((f"MARK_{index}", 1000 + index) for index in range(10))


def test_a_reader_never_finds_a_trace_file_partly_written(tmp_path: Path) -> None:
    """Read as soon as it exists (as a test polling for it does): always whole."""
    for attempt in range(10):
        output = TraceOutput(str(tmp_path / f"t{attempt}.json"))
        output.to_index([(i, 0, "", "simple", "1", MARKS, ()) for i in range(1, 2000)])
        written = tmp_path / f"t{attempt}.json.0"
        deadline = time.monotonic() + 60
        while not written.exists():
            assert time.monotonic() < deadline, "never written"
        assert len(json.loads(written.read_text())) == 2 * 1999
        output.close()
    assert not list(tmp_path.glob(".*"))  # nothing left under another name
