"""A decoupled Python model in a worker process streams its responses' tensors through shared
memory, as a unary model's outputs go (those of more than 32 KiB): they arrive intact, and the
segment's regions come back when a client cancels mid-stream, when the model fails
mid-stream, and when the worker dies (its segments leave the server with it). Read with
tritonclient's gRPC streaming; the segments are seen in the server's /proc maps."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from tests.integration.model_files import write
from tests.integration.server import RunningServer, running_server
from tests.integration.test_cancellation import eventually
from tests.integration.test_decoupled import Stream as DecoupledStream

# IN = [count, elements, fail_at]: `count` responses (fewer when cancelled), the i-th with OUT
# = `elements` FP32 of value i and TAG = b"r<i>"; the response at `fail_at` (if >= 0) is an
# error instead, which ends the request. Notes its pid, and how each request ended, in the
# file named by its `marker` parameter.
STREAMER = """
import contextlib
import os
import numpy as np

class InferdModel:
    def initialize(self, context):
        self.marker = context.parameters["marker"]
        self.note(f"pid {os.getpid()}")

    def note(self, line):
        with open(self.marker, "a") as marker:
            marker.write(line + "\\n")

    def execute(self, batch):
        request = batch.requests[0]
        count, elements, fail_at = (int(v) for v in request.inputs["IN"])
        sender = request.sender
        for index in range(count):
            if index == fail_at:
                sender.send_error(f"failed at response {index}")
                self.note("failed")
                return
            outputs = {
                "OUT": np.full(elements, index, np.float32),
                "TAG": np.array([f"r{index}".encode()], dtype=object),
            }
            if not sender.send(outputs):
                break
        self.note("cancelled" if sender.is_cancelled() else "completed")
        sender.close()
"""

CONFIG = """
name: "streamer"
backend: "python"
max_batch_size: 0
model_transaction_policy {{ decoupled: true }}
input [ {{ name: "IN", data_type: TYPE_INT32, dims: [ 3 ] }} ]
output [
  {{ name: "OUT", data_type: TYPE_FP32, dims: [ -1 ] }},
  {{ name: "TAG", data_type: TYPE_STRING, dims: [ 1 ] }}
]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
parameters [
  {{ key: "isolation", value: {{ string_value: "process" }} }},
  {{ key: "marker", value: {{ string_value: "{marker}" }} }}
]
"""

MIB = 1 << 20
LARGE = MIB  # FP32 elements: 4 MiB per response, beyond the segments' first size (1 MiB)
# More than the bytes a worker may have waiting in the segment (16 MiB): a stream this long
# completes only when the regions of those before it came back.
LONG = 24


@pytest.fixture(scope="module")
def marker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("streamer_marker") / "streamer.seen"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, marker: Path) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("streamer")
    write(root, "streamer", STREAMER, CONFIG.format(marker=marker))
    with running_server(root) as running:
        yield running


class Stream(DecoupledStream):
    def start(self, count: int, elements: int, fail_at: int = -1) -> None:
        self.send("streamer", [count, elements, fail_at], "")

    def next(self) -> tuple[np.ndarray | None, Any, bool]:
        """(OUT, TAG, final) of the next response; raises its error."""
        result, error = self.results.get(timeout=60)
        if error is not None:
            raise error
        final = result.get_response().parameters["triton_final_response"].bool_param
        return result.as_numpy("OUT"), result.as_numpy("TAG"), final

    def read_all(self) -> list[tuple[np.ndarray, Any]]:
        seen = []
        while True:
            out, tag, final = self.next()
            if out is not None:
                seen.append((out, tag))
            if final:
                return seen


@pytest.fixture
def stream(server: RunningServer) -> Iterator[Stream]:
    opened = Stream(server)
    yield opened
    opened.close()


def shm_mappings(pid: int) -> dict[int, int]:
    """The unlinked /dev/shm files `pid` maps (the worker segments): inode -> largest size."""
    sizes: dict[int, int] = {}
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and "/dev/shm/" in fields[5] and "(deleted)" in fields[5]:
            start, end = (int(bound, 16) for bound in fields[0].split("-"))
            inode = int(fields[4])
            sizes[inode] = max(sizes.get(inode, 0), end - start)
    return sizes


def carried(pid: int) -> dict[int, int]:
    """The first word of each unlinked /dev/shm file `pid` holds open, by inode: in a streams
    segment, the number of the last response the server copied out of it."""
    words = {}
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            if "/dev/shm/" in os.readlink(fd) and "(deleted)" in os.readlink(fd):
                with open(fd, "rb") as segment:
                    words[os.fstat(segment.fileno()).st_ino] = int.from_bytes(
                        segment.read(8), "little"
                    )
    return words


def grew_by(before: dict[int, int], after: dict[int, int]) -> list[int]:
    return [word - before[inode] for inode, word in after.items() if inode in before]


def noted(marker: Path) -> list[str]:
    return marker.read_text().splitlines() if marker.exists() else []


def worker_pid(marker: Path) -> int:
    return int([line for line in noted(marker) if line.startswith("pid ")][-1].split()[1])


def check_stream(seen: list[tuple[np.ndarray, Any]], count: int, elements: int) -> None:
    assert len(seen) == count
    for index, (out, tag) in enumerate(seen):
        assert out.shape == (elements,) and out.dtype == np.float32
        assert np.all(out == index)
        assert tag.tolist() == [f"r{index}".encode()]


# 4 MiB and 64 KiB responses (smaller ones travel pickled in their message, as
# test_decoupled.py's do).
@pytest.mark.parametrize(("count", "elements"), [(LONG, LARGE), (200, 16 << 10)])
def test_large_and_small_responses_arrive_intact_through_shared_memory(
    server: RunningServer, stream: Stream, count: int, elements: int
) -> None:
    # Twice the same request, so that only a count of responses moves a segment's first word.
    stream.start(count, elements)
    check_stream(stream.read_all(), count, elements)
    before = carried(server.process.pid)
    stream.start(count, elements)
    check_stream(stream.read_all(), count, elements)
    assert count in grew_by(before, carried(server.process.pid))
    if elements == LARGE:
        # The server read them from a segment that grew to hold one (the others stay at
        # their first 1 MiB), and no larger than the responses it may hold at once need.
        sizes = shm_mappings(server.process.pid)
        assert any(size >= LARGE * 4 for size in sizes.values()), sizes
        assert max(sizes.values()) <= 64 * MIB, sizes


def test_a_client_cancelling_mid_stream_gives_the_regions_back(
    server: RunningServer, marker: Path
) -> None:
    cancelled = Stream(server)
    before = noted(marker).count("cancelled")
    cancelled.start(10_000, LARGE)
    for _ in range(3):
        out, _, _ = cancelled.next()
        assert out is not None and out.shape == (LARGE,)
    cancelled.close(cancel=True)
    eventually(lambda: noted(marker).count("cancelled") == before + 1)
    after = Stream(server)
    try:
        after.start(LONG, LARGE)
        check_stream(after.read_all(), LONG, LARGE)
    finally:
        after.close()
    assert any(size >= LARGE * 4 for size in shm_mappings(server.process.pid).values())


def test_an_error_mid_stream_gives_the_regions_back(
    server: RunningServer, stream: Stream, marker: Path
) -> None:
    before = carried(server.process.pid)
    stream.start(10, LARGE, fail_at=4)
    for index in range(4):
        out, _, final = stream.next()
        assert out is not None and np.all(out == index) and not final
    with pytest.raises(Exception, match="failed at response 4"):
        stream.next()
    stream.start(LONG, LARGE)
    check_stream(stream.read_all(), LONG, LARGE)
    assert 4 + LONG in grew_by(before, carried(server.process.pid))


def test_a_dead_workers_segments_leave_the_server(
    server: RunningServer, stream: Stream, marker: Path
) -> None:
    stream.start(2, LARGE)
    check_stream(stream.read_all(), 2, LARGE)
    pid = server.process.pid
    before = shm_mappings(pid)
    assert any(size >= LARGE * 4 for size in before.values()), before
    stream.start(10_000, LARGE)
    out, _, _ = stream.next()
    assert out is not None
    os.kill(worker_pid(marker), signal.SIGKILL)
    with pytest.raises(Exception, match="worker"):
        stream.read_all()
    # A new worker, with segments of its own, serves the next requests (the first may still
    # fail: it finds the dead worker); the dead one's segments go.
    stream.start(2, 1)
    with contextlib.suppress(InferenceServerException):
        stream.read_all()
    stream.start(2, 1)
    check_stream(stream.read_all(), 2, 1)
    eventually(lambda: not set(before) & set(shm_mappings(pid)))
