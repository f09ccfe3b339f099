"""One worker process of a Python model instance, seen from the server: its pipe and
shared-memory segments, and the run of a batch in it.

The worker is a fresh interpreter (`python -m inferd.backends.python.worker`), never a fork
of the server, whose threads and event loop would not survive one. While a batch runs, each
of its requests whose client goes away is named to the worker (a `CancelRequest`), so that
the model's `is_cancelled()` sees it there too.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection

from inferd.backends.base import BatchOutputs, BatchRequest
from inferd.backends.python.bls import calls_parent
from inferd.backends.python.call_answers import CallAnswerer
from inferd.backends.python.call_memory import CallMemory
from inferd.backends.python.custom_metrics import MetricUpdate, apply_from_worker
from inferd.backends.python.protocol import (
    AnswerRead,
    BatchDone,
    CallModel,
    CancelCall,
    CancelRequest,
    ExecuteBatch,
    Failed,
    Ready,
    WorkerSetup,
)
from inferd.backends.python.transport import Segment
from inferd.core.calls import ModelCalls
from inferd.core.errors import InferdError
from inferd.core.types import Array

logger = logging.getLogger(__name__)

_STOP_GRACE_S = 5.0
# Thread pools of the numeric libraries a model may use (OpenMP, OpenBLAS, MKL, ...). Each
# sized to the machine in every worker, N workers oversubscribe the cores N times over, and
# OpenBLAS's spinning threads then starve each other: measured here, 2 workers of a numpy MLP
# served 11x fewer requests than with one thread each.
_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


# How often a batch's requests are looked at for a cancellation while the worker runs it.
_CANCEL_CHECK_S = 0.05


class WorkerLost(Exception):
    """The worker crashed or hung; the message says which."""


class Worker:
    """One worker process with its pipe and shared-memory segments."""

    def __init__(self, setup: WorkerSetup, threads: int, calls: ModelCalls | None) -> None:
        # Several threads send: this one, the event loop (BLS answers, a stream's cancel).
        self._send_lock = threading.Lock()
        self.inputs = Segment.create()
        self.outputs = Segment.create()
        # The tensors of the model's calls to other models (BLS), each way.
        self.calls_in = Segment.create()
        self.calls_out = Segment.create()
        # A decoupled model's streamed responses (created for every worker: untouched, a
        # segment costs no memory).
        self.streamed = Segment.create()
        self._answerer = CallAnswerer(
            calls, self._send, CallMemory(self.calls_in), CallMemory(self.calls_out)
        )
        ours, theirs = socket.socketpair()
        segments = (self.inputs, self.outputs, self.calls_in, self.calls_out, self.streamed)
        fds = (theirs.fileno(), *(segment.fd for segment in segments))
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "inferd.backends.python.worker", *map(str, fds)],
                pass_fds=fds,
                stdin=subprocess.DEVNULL,
                stdout=2,  # user prints go to the server's stderr, with its logs
                env=os.environ | dict.fromkeys(_THREAD_VARIABLES, str(threads)),
            )
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._next_key = 0  # names the requests of each batch, in `CancelRequest`s
        try:
            self._send(setup)
            reply = self._receive(None)
        except WorkerLost:
            self.kill()
            raise
        if isinstance(reply, Failed):
            self.stop()
            raise reply.error.error()
        assert isinstance(reply, Ready)
        self.pid = reply.pid

    def run(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
        timeout: float | None,
        streams: list[int] | None = None,
    ) -> BatchOutputs:
        size, groups = self.inputs.write([inputs])
        sent = [request.portable() for request in requests]
        first_key = self._next_key
        self._next_key += len(requests)
        self._answerer.calls_parent = calls_parent(requests)
        self._send(ExecuteBatch(size, groups[0], list(output_names), sent, streams, first_key))
        try:
            reply = self._receive(timeout, requests, first_key)
        finally:
            self._answerer.calls_parent = None
        if isinstance(reply, Failed):
            raise reply.error.error()
        assert isinstance(reply, BatchDone)
        for index in reply.rescheduled:
            requests[index].rescheduled = True
        # Copied out: the segment is overwritten by the next batch while these are being sent.
        answers = [
            answer.error()
            if not isinstance(answer, list)
            else self.outputs.read(reply.size, answer, copy=True)
            for answer in reply.answers
        ]
        if reply.stacked:
            stacked = answers[0]
            assert not isinstance(stacked, InferdError)
            return stacked
        return answers

    def _send(self, message: object) -> None:
        try:
            with self._send_lock:
                self._conn.send(message)
        except OSError:
            raise WorkerLost(self._crashed()) from None

    def _receive(
        self, timeout: float | None, requests: Sequence[BatchRequest] = (), first_key: int = 0
    ) -> object:
        """The worker's next message, within `timeout` s. Meanwhile every `_CANCEL_CHECK_S`,
        each of the running `requests` whose client went away is named to the worker: a
        reply that comes sooner costs nothing more."""
        deadline = None if timeout is None else time.monotonic() + timeout
        told: set[int] = set()
        try:
            while True:
                while not self._conn.poll(_wait(deadline, bool(requests))):
                    if deadline is not None and time.monotonic() >= deadline:
                        raise WorkerLost(f"timed out after {timeout:g} s")
                    for index, request in enumerate(requests):
                        if request.cancelled and index not in told:
                            told.add(index)
                            self._send(CancelRequest(first_key + index))
                message = self._conn.recv()
                if not self._took(message):
                    return message
        except (EOFError, OSError):
            raise WorkerLost(self._crashed()) from None

    def _took(self, message: object) -> bool:
        """Whether `message` was one the worker sends at any time (now handled)."""
        if isinstance(message, MetricUpdate):
            apply_from_worker(message)
        elif isinstance(message, CallModel):
            self._answerer.take(message)
        elif isinstance(message, AnswerRead):
            self._answerer.read(message)
        elif isinstance(message, CancelCall):
            self._answerer.cancel(message)
        else:
            return False
        return True

    def _crashed(self) -> str:
        try:
            code = self.process.wait(_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            return "stopped answering"
        if code < 0:
            return f"crashed (killed by {signal.Signals(-code).name})"
        return f"crashed (exit code {code})"

    def stop(self) -> None:
        """Close the pipe (the worker finalizes and exits); kill it if it does not in time."""
        self._conn.close()
        try:
            self.process.wait(_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            logger.warning(
                "worker %d did not exit in %g s: killed", self.process.pid, _STOP_GRACE_S
            )
            self.kill()
        self._release()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self._conn.close()
        self._release()

    def _release(self) -> None:
        for segment in (self.inputs, self.outputs, self.calls_in, self.calls_out, self.streamed):
            segment.close()


def _wait(deadline: float | None, checking: bool) -> float | None:
    """How long to wait for the worker's next message: until `deadline` (None: no end), or
    `_CANCEL_CHECK_S` at most while requests are to be checked."""
    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
    if not checking:
        return remaining
    return _CANCEL_CHECK_S if remaining is None else min(remaining, _CANCEL_CHECK_S)
