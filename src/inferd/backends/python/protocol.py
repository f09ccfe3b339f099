"""The messages between the server and a worker process (pickled over a socket pair).

server -> worker: WorkerSetup, then ExecuteBatch ... (the pipe closing means: finalize, exit)
worker -> server: Ready | Failed after setup; BatchDone | Failed after each batch; and at any
time `custom_metrics.MetricUpdate`s (a model's metric changes), which the server applies, and
`CallModel`s (a model calling another model), which the server answers with `CallAnswer`s

A decoupled model's worker also sends `Streamed` responses at any time (before or after its
batch's `BatchDone`; their tensors in its streams segment, `stream_memory.py`), and takes
`CancelRequest`, `EndStream` and `PauseStream` at any time; each request is named by a key the
server gave it (`ExecuteBatch.streams`; the same key in each step of an iterative request).
Any other worker gets `CancelRequest`s only while its batch runs, naming a request by its
index after `ExecuteBatch.first_key`; a late one (its batch finished) is ignored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from inferd.backends.base import BatchRequest
from inferd.backends.python.api import ModelContext
from inferd.backends.python.error_codes import error_of
from inferd.backends.python.transport import ArrayMeta
from inferd.core.batch_io import BatchIO
from inferd.core.errors import ErrorCode, InferdError
from inferd.core.types import Array, InferRequest, InferResponse


@dataclass(frozen=True, slots=True)
class WireError:
    code: str
    message: str

    @classmethod
    def of(cls, error: InferdError) -> WireError:
        return cls(error.code.value, error.message)

    def error(self) -> InferdError:
        return error_of(ErrorCode(self.code), self.message)


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    model_file: Path
    label: str  # names the imported module
    context: ModelContext
    output_datatypes: dict[str, str]  # V2 datatypes
    batched: bool
    decoupled: bool = False
    log_level: int = logging.INFO  # of the server's `inferd.model` loggers
    batch_io: BatchIO | None = None  # the model's ragged batching, when it has any


@dataclass(frozen=True, slots=True)
class Ready:
    pid: int


@dataclass(frozen=True, slots=True)
class Failed:
    error: WireError


@dataclass(frozen=True, slots=True)
class ExecuteBatch:
    size: int  # bytes of the input segment in use
    inputs: list[ArrayMeta]
    output_names: list[str]
    requests: list[BatchRequest]
    streams: list[int] | None = None  # a decoupled model's: each request's key
    first_key: int = 0  # otherwise request i is named first_key + i by a `CancelRequest`


@dataclass(frozen=True, slots=True)
class BatchDone:
    size: int  # bytes of the output segment in use
    stacked: bool  # one group of outputs for the batch, or one answer per request
    answers: list[list[ArrayMeta] | WireError]
    rescheduled: tuple[int, ...] = ()  # the requests handed back for another step, by index


@dataclass(frozen=True, slots=True)
class Streamed:
    """One response of the request named `key` (a decoupled model's). Its tensors are in the
    streams segment (`size`, `placed`), as the `number`-th response put there; or, without
    any, `outputs` is None (the final flag alone) or empty."""

    key: int
    outputs: dict[str, Array] | None
    error: WireError | None
    final: bool
    size: int = 0
    placed: list[ArrayMeta] | None = None
    number: int = 0


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """The client of the request named `key` went away."""

    key: int


@dataclass(frozen=True, slots=True)
class EndStream:
    """The server ended the stream of the decoupled request named `key` without the model's
    final response (the scheduler failed it, e.g. an iterative request that idled out between
    two steps): the model's further sends for it are dropped."""

    key: int


@dataclass(frozen=True, slots=True)
class PauseStream:
    """The reader of the request named `key` is behind (`paused`): its sends wait in the
    worker until the server says it caught up (not `paused`)."""

    key: int
    paused: bool


@dataclass(frozen=True, slots=True)
class CallModel:
    """The model calls another model of the server (BLS); `key` names the call's answers.
    The request's inputs are in the worker's calls segment (`size`, `inputs`)."""

    key: int
    request: InferRequest  # without its inputs
    stream: bool  # every response of a decoupled model, not one
    size: int
    inputs: list[ArrayMeta]


@dataclass(frozen=True, slots=True)
class CallAnswer:
    """One answer (the `seq`-th) to the call named `key`: a response, its outputs in the
    server's calls segment (`size`, `outputs`), or an error; `final` ends the call."""

    key: int
    response: InferResponse | None  # without its outputs
    error: WireError | None
    final: bool = True
    seq: int = 0
    size: int = 0
    outputs: list[ArrayMeta] | None = None


@dataclass(frozen=True, slots=True)
class CancelCall:
    """The model gave up waiting for its call named `key` (it timed out): cancel it."""

    key: int


@dataclass(frozen=True, slots=True)
class AnswerRead:
    """The worker copied the outputs of answer `seq` to call `key`: their region is free."""

    key: int
    seq: int
