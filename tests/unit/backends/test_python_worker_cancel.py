"""A worker's record of cancellations: the requests of the running batch named by the server
read as cancelled when the model asks, and nothing is read off the pipe between batches."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from multiprocessing.connection import Connection

import pytest

from inferd.backends.base import BatchRequest
from inferd.backends.python.protocol import CancelRequest, ExecuteBatch
from inferd.backends.python.worker_cancel import CancelInbox


@pytest.fixture
def pipe() -> Iterator[tuple[Connection, Connection]]:
    server, worker = socket.socketpair()
    ends = Connection(server.detach()), Connection(worker.detach())
    yield ends
    for end in ends:
        end.close()


def batch(first_key: int, count: int) -> ExecuteBatch:
    requests = [BatchRequest(i, i + 1) for i in range(count)]
    return ExecuteBatch(0, [], ["OUT"], requests, None, first_key)


def test_the_named_request_of_the_running_batch_reads_cancelled(
    pipe: tuple[Connection, Connection],
) -> None:
    server, worker = pipe
    inbox = CancelInbox(worker)
    message = batch(first_key=5, count=3)
    inbox.open(message)
    assert [r.cancelled for r in message.requests] == [False, False, False]
    server.send(CancelRequest(2))  # a request of an earlier batch: its key is not here
    server.send(CancelRequest(6))
    assert [r.cancelled for r in message.requests] == [False, True, False]
    inbox.close()


def test_between_batches_the_pipe_is_left_to_the_main_loop(
    pipe: tuple[Connection, Connection],
) -> None:
    server, worker = pipe
    inbox = CancelInbox(worker)
    first = batch(first_key=0, count=1)
    inbox.open(first)
    inbox.close()
    server.send(CancelRequest(0))  # late: its batch already finished
    assert not first.requests[0].cancelled
    assert isinstance(worker.recv(), CancelRequest)  # still there for the main loop to skip

    second = batch(first_key=1, count=1)
    inbox.open(second)
    server.send(CancelRequest(1))
    assert second.requests[0].cancelled  # read again while a batch runs
