"""The shared memory of a decoupled worker's streamed responses: a region is free once the
server copied its response out (the segment's first word says so, no message back), small
responses stay in their message, and a stopped pipe ends a wait for room."""

from __future__ import annotations

import numpy as np
import pytest

from inferd.backends.python.protocol import Streamed
from inferd.backends.python.stream_memory import IN_BAND, WINDOW, StreamReader, StreamWriter
from inferd.backends.python.transport import Segment


def _pair() -> tuple[Segment, StreamWriter, StreamReader, list[Streamed]]:
    segment = Segment.create()
    sent: list[Streamed] = []
    writer = StreamWriter(segment, lambda message: sent.append(message))  # type: ignore[arg-type]
    return segment, writer, StreamReader(Segment(segment.fd, None)), sent


def test_a_region_is_reused_once_the_server_copied_its_response_out() -> None:
    segment, writer, reader, sent = _pair()
    big = {"OUT": np.arange(1 << 20, dtype=np.float32), "TAG": np.array([b"t"], dtype=object)}
    writer.send(3, big, None, False)
    writer.send(3, big, None, False)  # the first is not copied out yet: another region
    first, second = sent
    assert first.outputs is None and first.placed is not None and second.placed is not None
    assert second.placed[0].offset > first.placed[0].offset
    for message in (first, second):
        got = reader.outputs(message)
        assert got is not None
        np.testing.assert_array_equal(got["OUT"], big["OUT"])
        assert got["TAG"].tolist() == [b"t"]
    assert segment.load_word() == second.number == 2
    writer.send(3, big, None, True)
    assert sent[-1].placed is not None
    assert sent[-1].placed[0].offset == first.placed[0].offset  # both freed: the first again
    segment.close()


def test_small_responses_and_bare_final_flags_travel_in_their_message() -> None:
    segment, writer, reader, sent = _pair()
    small = {"OUT": np.ones(IN_BAND // 4, np.float32)}
    writer.send(1, small, None, False)
    writer.send(1, None, None, True)
    assert [message.placed for message in sent] == [None, None]
    got = reader.outputs(sent[0])
    assert got is not None and got["OUT"] is small["OUT"]
    assert reader.outputs(sent[1]) is None
    assert segment.load_word() == 0  # nothing was placed
    segment.close()


def test_a_send_beyond_the_window_fails_once_the_pipe_closed_instead_of_waiting() -> None:
    segment, writer, _, sent = _pair()
    writer.send(1, {"OUT": np.ones(WINDOW // 4, np.float32)}, None, False)  # never copied out
    writer.stop()
    with pytest.raises(OSError, match="closed"):
        writer.send(1, {"OUT": np.ones(IN_BAND, np.float32)}, None, False)
    assert len(sent) == 1
    segment.close()
