"""A worker process's main loop: import the model, initialize it, then run batches until the
server's end of the pipe closes (or the server itself is gone).

Started by `isolated_worker.py` as `python -m inferd.backends.python.worker CONN IN OUT CALLS_IN
CALLS_OUT STREAMED` (inherited file descriptors: the socket to the server, the batches' input
and output shared-memory segments, those of the model's calls to other models, to and from the
server, and that of a decoupled model's streamed responses).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection

from inferd.backends.base import BatchOutputs
from inferd.backends.python.call_memory import CallMemory
from inferd.backends.python.custom_metrics import forward_to
from inferd.backends.python.in_process import InProcessInstance
from inferd.backends.python.model_file import import_model
from inferd.backends.python.model_log import MODEL_LOGGER
from inferd.backends.python.model_scope import ModelScope, set_default
from inferd.backends.python.protocol import (
    BatchDone,
    ExecuteBatch,
    Failed,
    Ready,
    WireError,
    WorkerSetup,
)
from inferd.backends.python.stream_memory import StreamWriter
from inferd.backends.python.transport import Segment
from inferd.backends.python.worker_calls import PipeCalls
from inferd.backends.python.worker_cancel import CancelInbox
from inferd.backends.python.worker_streams import BatchReader, LockedPipe, PipeSink
from inferd.core.errors import InferdError, ModelExecutionError

logger = logging.getLogger("inferd.backends.python.worker")

_PARENT_CHECK_S = 1.0


def _exit_with_parent(parent: int) -> None:
    """The pipe's EOF stops an idle worker; this stops one busy in user code when the server
    is gone (killed), so no worker outlives it."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _log_as_the_server(level: int) -> None:
    """The model's log lines (`pb_utils.Logger`), as the server writes its own: this stderr
    is the server's."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    models = logging.getLogger(MODEL_LOGGER)
    models.addHandler(handler)
    models.setLevel(level)
    models.propagate = False


def _start(setup: WorkerSetup, calls: PipeCalls) -> InProcessInstance:
    _log_as_the_server(setup.log_level)
    set_default(ModelScope(setup.context.model_name, calls))
    _, factory = import_model(setup.model_file, setup.label)
    return InProcessInstance(
        factory,
        setup.context,
        setup.output_datatypes,
        setup.batched,
        setup.decoupled,
        calls,
        setup.batch_io,
    )


def _run(
    instance: InProcessInstance,
    message: ExecuteBatch,
    inputs: Segment,
    outputs: Segment,
    sinks: list[PipeSink] | None = None,
) -> BatchDone | Failed:
    # A decoupled model may still read its inputs after `execute` returned, when the next
    # batch has overwritten the segment: it gets copies.
    arrays = inputs.read(message.size, message.inputs, copy=sinks is not None)
    try:
        result = instance.execute(arrays, message.output_names, message.requests, sinks)
        done = _done(result, outputs)
        handed_back = tuple(i for i, r in enumerate(message.requests) if r.rescheduled)
        return dataclasses.replace(done, rescheduled=handed_back) if handed_back else done
    except InferdError as exc:
        return Failed(WireError.of(exc))
    except Exception as exc:  # e.g. an output that cannot be pickled
        logger.exception("sending the outputs failed")
        return Failed(WireError.of(ModelExecutionError(f"sending the outputs failed: {exc}")))


def _done(result: BatchOutputs, outputs: Segment) -> BatchDone:
    if isinstance(result, dict):
        size, groups = outputs.write([result])
        return BatchDone(size, True, list(groups))
    size, groups = outputs.write([a for a in result if not isinstance(a, InferdError)])
    placed = iter(groups)
    answers = [WireError.of(a) if isinstance(a, InferdError) else next(placed) for a in result]
    return BatchDone(size, False, answers)


def main(argv: list[str]) -> int:
    conn_fd, input_fd, output_fd, calls_in_fd, calls_out_fd, streamed_fd = (int(a) for a in argv)
    # Ctrl-C reaches the whole process group: the server decides when its workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format=f"worker {os.getpid()}: %(message)s"
    )
    _exit_with_parent(os.getppid())
    conn = Connection(conn_fd)
    inputs, outputs = Segment(input_fd), Segment(output_fd)
    setup: WorkerSetup = conn.recv()
    pipe = LockedPipe(conn)  # metric changes and BLS calls are sent from the model's threads
    forward_to(pipe.send)
    # The reader of the pipe exists before `initialize`, which may call other models.
    reader = (
        BatchReader(pipe, StreamWriter(Segment(streamed_fd), pipe.send))
        if setup.decoupled
        else CancelInbox(conn)
    )
    pump = None if isinstance(reader, BatchReader) else reader.pump
    calls = PipeCalls(
        pipe, pump, CallMemory(Segment(calls_in_fd)), CallMemory(Segment(calls_out_fd))
    )
    reader.deliver = calls.deliver
    try:
        instance = _start(setup, calls)
    except InferdError as exc:
        pipe.send(Failed(WireError.of(exc)))
        return 1
    pipe.send(Ready(os.getpid()))
    try:
        if isinstance(reader, BatchReader):
            _serve_streams(instance, reader, pipe, inputs, outputs)
        else:
            _serve_batches(instance, reader, pipe, inputs, outputs)
    finally:
        instance.close()
    return 0


def _serve_batches(
    instance: InProcessInstance,
    inbox: CancelInbox,
    pipe: LockedPipe,
    inputs: Segment,
    outputs: Segment,
) -> None:
    while (message := inbox.next_batch()) is not None:
        inbox.open(message)
        reply = _run(instance, message, inputs, outputs)
        inbox.close()
        pipe.send(reply)


def _serve_streams(
    instance: InProcessInstance,
    reader: BatchReader,
    pipe: LockedPipe,
    inputs: Segment,
    outputs: Segment,
) -> None:
    """A decoupled model's loop: see `worker_streams.py`."""
    while (batch := reader.next_batch()) is not None:
        message, sinks = batch
        reply = _run(instance, message, inputs, outputs, sinks)
        if isinstance(reply, Failed):  # the server ends their streams with the failure
            for sink in sinks:
                sink.end(cancelled=False)
        pipe.send(reply)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
