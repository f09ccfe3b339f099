"""The Engine: the one in-process API of inferd, a thin facade over the model table and the
model lifecycle that holds the request path. Frontends talk only to it."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from inferd.backends.base import DeviceKind
from inferd.backends.registry import BackendRegistry
from inferd.core.calls import CALLERS, refuse_waiting_caller
from inferd.core.errors import (
    DecoupledModel,
    InferdError,
    InvalidArgument,
    Unavailable,
    Unsupported,
)
from inferd.core.model_config import ModelConfig, config_to_dict
from inferd.core.observer import (
    TENSOR_BACKEND_OUTPUT,
    TENSOR_QUEUE_INPUT,
    FailureReason,
    Observer,
    TensorObserver,
    failure_reason,
)
from inferd.core.request_parameters import check_reserved
from inferd.core.responses import ResponseChannel, ResponseTaker, StreamItem
from inferd.core.running_loop import running_loop
from inferd.core.runtime_settings import NO_CONTROLS, RuntimeControls
from inferd.core.statistics import StatisticsSource, VersionStatistics
from inferd.core.tracing import RequestTracing
from inferd.core.types import Array, InferRequest, InferResponse, RequestedOutput
from inferd.engine.api import (
    EngineSettings,
    InstanceMetadata,
    ModelMetadata,
    TensorMetadata,
    VersionStatus,
)
from inferd.engine.calls import EngineCalls, HereCall
from inferd.engine.classification import classify_outputs
from inferd.engine.lifecycle import ModelLifecycle
from inferd.engine.loader import LoadedVersion
from inferd.engine.model_table import ModelTable
from inferd.engine.request_checks import ModelTensor, apply_reshape, check_request
from inferd.engine.response_cache import ResponseCache, cache_key
from inferd.instances.instance import Instance
from inferd.scheduling.dynamic import DynamicBatcher
from inferd.scheduling.ensemble import response_parameters


class Engine:
    """Serves the models of one repository: both frontends call it, and nothing below it.

    It has three parts. The model table (`model_table.py`) holds what is loaded and the state
    of every version asked for. The lifecycle (`lifecycle.py`) changes the table as the control
    mode allows: load at start, atomic reload, unload, polling, ensemble re-checks. This facade
    runs requests (`infer`, the unary fast path, and `stream`, every response of a request:
    check, reshape, the model's scheduler, observers) and answers the frontends' queries, so
    they never reach past it: readiness, metadata, decoupled or not, the config (as the
    protobuf message or its JSON form), input specs resolved at load, the repository index and
    statistics (from `statistics`, the observer counting them, when the server keeps them).
    """

    def __init__(
        self,
        settings: EngineSettings,
        registry: BackendRegistry,
        observers: Sequence[Observer] = (),
        statistics: StatisticsSource | None = None,
        controls: RuntimeControls = NO_CONTROLS,
        tracing: RequestTracing | None = None,
    ) -> None:
        self.settings = settings
        # The trace and logging extensions, offered when set (the frontends reach them here).
        self.controls = controls
        # Spans of requests, when the server traces so; frontends start those they decode.
        self.tracing = tracing
        self._request_finished = tuple(observer.request_finished for observer in observers)
        self._tensor_observer = next((o for o in observers if isinstance(o, TensorObserver)), None)
        self._statistics = statistics
        self._table = ModelTable()
        # What models may use to call other models (BLS): this engine's own request path.
        self._calls = EngineCalls(self.infer, self.stream, self.call_here)
        self._lifecycle = ModelLifecycle(
            settings, registry, observers, self._table, self._step, self._calls, tracing
        )

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Load what the control mode asks for; in poll mode, then follow the repository."""
        self._calls.attach(running_loop())
        await self._lifecycle.start()

    async def stop(self) -> None:
        """Finish every accepted request, then unload everything."""
        await self._lifecycle.stop()

    async def control_load(
        self,
        name: str,
        config_override: dict[str, Any] | None,
        files: dict[str, bytes] | None = None,
    ) -> None:
        """The repository API's load (explicit mode only); `config_override` replaces the
        model's config file (its JSON form), `files` (`file:<path>` -> content) its folder."""
        await self._lifecycle.control_load(name, config_override, files)

    async def control_unload(self, name: str) -> None:
        """The repository API's unload (explicit mode only); a model not loaded is a no-op."""
        await self._lifecycle.control_unload(name)

    # ---- queries ---------------------------------------------------------------------------

    def is_live(self) -> bool:
        return not self._lifecycle.stopping

    def is_ready(self) -> bool:
        if self._lifecycle.stopping:
            return False
        return not self.settings.strict_readiness or self._table.all_ready()

    def model_ready(self, name: str, version: str = "") -> bool:
        """Whether the version a request names ("" = the highest) can serve now. Raises
        `NotFound` for a model or version not asked for; each protocol answers that its way."""
        try:
            self._table.find_version(name, version)
        except Unavailable:
            return False
        return True

    def model_decoupled(self, name: str, version: str = "") -> bool:
        """Whether the version a request names answers with a stream of responses (a
        decoupled model): only `stream` serves it. Raises as `model_ready` does."""
        return self._table.find_version(name, version).decoupled

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        loaded = self._table.find_version(name, version)
        batch = loaded.max_batch_size
        return ModelMetadata(
            name=name,
            versions=self._table.version_names(name),
            platform=loaded.config.platform or loaded.config.backend,
            inputs=[_tensor_metadata(s, batch) for s in loaded.inputs.values()],
            outputs=[_tensor_metadata(s, batch) for s in loaded.outputs.values()],
            instances=[_instance_metadata(i) for i in loaded.instances],
        )

    def model_config(self, name: str, version: str = "") -> ModelConfig:
        """The completed config the version serves with (a `ModelConfig` message)."""
        return self._table.find_version(name, version).config

    def model_config_json(self, name: str, version: str = "") -> dict[str, Any]:
        """The completed config in its JSON form, as the V2 config route answers it."""
        return config_to_dict(self.model_config(name, version))

    def input_specs(self, name: str, version: str = "") -> tuple[list[ModelTensor], int]:
        """The inputs of the version a request names, as resolved at load, and its
        max_batch_size."""
        loaded = self._table.find_version(name, version)
        return list(loaded.inputs.values()), loaded.max_batch_size

    @property
    def statistics_enabled(self) -> bool:
        return self._statistics is not None

    def model_statistics(self, name: str = "", version: str = "") -> list[VersionStatistics]:
        """Statistics of every serving version, of one model, or of one version."""
        if self._statistics is None:
            raise Unsupported("the statistics extension is not enabled on this server")
        if version and not name:  # Triton ignores the version here; refuse the ambiguity
            raise InvalidArgument(f"statistics of version '{version}' need a model name")
        return self._statistics.snapshot(name, version)

    def repository_index(self, ready_only: bool = False) -> list[VersionStatus]:
        """Every model in the repository folder and every version asked for, with its state."""
        try:
            names = self._lifecycle.repository_model_names()
        except InferdError:
            names = []
        return self._table.index(names, ready_only)

    def instance_devices(self) -> list[tuple[str, str, str, str]]:
        """(model, version, instance, device) for every instance of every serving version."""
        return [
            (loaded.model_name, str(loaded.version), instance.name, str(instance.device))
            for loaded in self._table.loaded_versions()
            for instance in loaded.instances
        ]

    def warmup_durations(self) -> list[tuple[str, str, float]]:
        """(model, version, seconds its `model_warmup` took) for every serving version that
        has one."""
        return [
            (loaded.model_name, str(loaded.version), loaded.warmup_seconds)
            for loaded in self._table.loaded_versions()
            if loaded.warmup
        ]

    def cached_versions(self) -> list[tuple[str, str]]:
        """(model, version) of every serving version whose requests go through the response
        cache."""
        return [
            (loaded.model_name, str(loaded.version))
            for loaded in self._table.loaded_versions()
            if loaded.cached
        ]

    def pending_requests(self) -> list[tuple[str, str, int]]:
        """(model, version, requests queued and not yet executing) for every serving version."""
        return [
            (loaded.model_name, str(loaded.version), loaded.scheduler.pending())
            for loaded in self._table.loaded_versions()
        ]

    def in_flight_requests(self) -> list[tuple[str, str, int]]:
        """(model, version, requests inside the engine: queued, executing or streaming) for
        every serving version."""
        return [
            (loaded.model_name, str(loaded.version), loaded.in_flight)
            for loaded in self._table.loaded_versions()
        ]

    # ---- inference -------------------------------------------------------------------------

    async def _step(self, request: InferRequest) -> dict[str, Array]:
        """One ensemble step, through its composing model's own path (validation, scheduler,
        statistics)."""
        entry = self._table.get(request.model_name)
        if entry is None or not entry.versions:
            raise Unavailable(f"composing model '{request.model_name}' is not loaded")
        return (await self.infer(request)).outputs

    async def infer(self, request: InferRequest) -> InferResponse:
        timestamps = request.timestamps
        if not timestamps.received:
            timestamps.received = time.monotonic_ns()
        loaded = self._table.find_version(request.model_name, request.model_version)
        if loaded.decoupled:
            raise DecoupledModel(
                f"model '{request.model_name}' is decoupled: it answers with a stream of "
                "responses, which a unary infer cannot carry"
            )
        version = loaded.version_name
        success = False
        # An ensemble has no execution of its own to count its rows; read them before its
        # steps may release the inputs.
        ensemble_rows = 0
        if loaded.ensemble is not None:
            ensemble_rows = request.batch_size() if loaded.max_batch_size > 0 else 1
        cancelled = False
        failure: FailureReason | None = None
        tracing = self._traced(request)
        self._arrived(request)
        loaded.in_flight += 1
        try:
            self._trace_tensors(request, TENSOR_QUEUE_INPUT, request.inputs)
            self._prepare(loaded, request)
            # Awaited here, not in a coroutine of its own: a level less that every step of the
            # request passes through.
            cache = self.settings.response_cache
            if loaded.cached and cache is not None:
                outputs = await self._run_cached(loaded, request, cache)
            else:
                submitted = await loaded.scheduler.submit(request)
                outputs = self._finish(loaded, submitted, request.outputs)
            self._trace_tensors(request, TENSOR_BACKEND_OUTPUT, outputs)
            success = True
        except asyncio.CancelledError:
            # Its client went away: a queued request leaves its queue as the scheduler's
            # future is cancelled; a running one's model sees the flag.
            cancelled = request.cancelled = True
            failure = FailureReason.CANCELED
            raise
        except BaseException as exc:
            failure = failure_reason(exc)
            raise
        finally:
            loaded.in_flight -= 1
            timestamps.sent = time.monotonic_ns()
            rows = ensemble_rows if success else 0
            self._finished(request, version, success, rows, cancelled, failure, tracing)
        response = InferResponse(request.model_name, version, outputs, request.id)
        if loaded.ensemble is not None:
            response.parameters.update(response_parameters(request))
        return response

    async def stream(
        self, request: InferRequest, taker: ResponseTaker | None = None
    ) -> AsyncIterator[InferResponse]:
        """Every response of one request, the last with `final` set: exactly one for a model
        that is not decoupled (through `infer`); zero or more, then the final flag (maybe a
        response without outputs), for a decoupled one. Closing the iterator early cancels
        the request: it leaves its queue, or the model sees it cancelled. A decoupled
        request's `outputs` are consumed (the responses are cut to them here).

        As in Triton, a request is complete at its final response: the iterator ends right
        after it, though the model's `execute` may still run; the request leaves the engine
        (its statistics, a success; the in-flight gauge) when that execution ends. So a
        frontend's answer ends at the final response, and its client leaving after that
        cancels nothing.

        `taker`: a decoupled request's responses but the last (and a failure) are offered to
        it as they arrive, on the event loop, where they need no change but the cut (no
        output reshaped, none asked for with parameters); those it takes are not yielded."""
        loaded = self._table.find_version(request.model_name, request.model_version)
        if not loaded.decoupled:
            yield await self.infer(request)
            return
        timestamps = request.timestamps
        if not timestamps.received:
            timestamps.received = time.monotonic_ns()
        version = loaded.version_name
        success = cancelled = False
        failure: FailureReason | None = None
        channel = ResponseChannel()
        execution: asyncio.Future[dict[str, Array]] | None = None
        tracing = self._traced(request)
        self._arrived(request)
        loaded.in_flight += 1
        loaded.streams.add(channel)
        try:
            self._trace_tensors(request, TENSOR_QUEUE_INPUT, request.inputs)
            self._prepare(loaded, request)
            # The model sends every output; each response is cut to those the client asked for.
            requested, request.outputs = request.outputs, None
            request.responses = channel
            execution = asyncio.ensure_future(loaded.scheduler.submit(request))
            execution.add_done_callback(channel.execution_done)
            if taker is not None and _as_sent(loaded, requested):
                channel.read_directly(self._direct_reader(request, version, requested, taker))
            while True:
                item = await channel.get()
                if item.error is not None:
                    raise item.error
                outputs = _selected(requested, self._finish(loaded, item.outputs or {}, requested))
                self._responded(request, outputs)
                yield InferResponse(
                    request.model_name, version, outputs, request.id, final=item.final
                )
                if item.final:
                    break
            success = True
        except (GeneratorExit, asyncio.CancelledError):
            # Closed early or its task cancelled: its client went away.
            cancelled = request.cancelled = True
            failure = FailureReason.CANCELED
            raise
        except BaseException as exc:
            failure = failure_reason(exc)
            raise
        finally:
            loaded.streams.discard(channel)
            channel.read_directly(None)
            channel.cancel()  # a no-op for the model once the final response was sent
            ended = functools.partial(
                self._stream_ended, loaded, request, version, success, cancelled, failure, tracing
            )
            _end_with(execution, success, ended)

    def _stream_ended(
        self,
        loaded: LoadedVersion,
        request: InferRequest,
        version: str,
        success: bool,
        cancelled: bool,
        failure: FailureReason | None,
        tracing: RequestTracing | None,
    ) -> None:
        """A decoupled request left the engine: its stream ended and its execution too."""
        loaded.in_flight -= 1
        request.timestamps.sent = time.monotonic_ns()
        self._finished(request, version, success, 0, cancelled, failure, tracing)

    def call_here(self, request: InferRequest) -> HereCall | None:
        """A model's call (BLS) checked and lent an instance idle now, for its waiting thread
        to run (`calls.py`); None when it takes `infer`'s path: a model that batches, with a
        queue or no such instance free, an ensemble, a cached or a decoupled one, or while
        tensors are traced."""
        timestamps = request.timestamps
        if not timestamps.received:
            timestamps.received = time.monotonic_ns()
        loaded = self._table.find_version(request.model_name, request.model_version)
        scheduler = loaded.scheduler
        if loaded.decoupled or (loaded.cached and self.settings.response_cache is not None):
            return None
        if self._tensor_observer is not None and self._tensor_observer.tensors_on:
            return None  # its outputs are traced on the loop: before its caller may change them
        lease = scheduler.lend_here() if isinstance(scheduler, DynamicBatcher) else None
        if lease is None:
            return None
        tracing = self._traced(request)
        self._arrived(request)
        call = HereCall(
            request,
            loaded,
            lease,
            tracing,
            self._finish,
            self._end_here,
            running_loop(),
        )
        loaded.in_flight += 1
        try:
            self._trace_tensors(request, TENSOR_QUEUE_INPUT, request.inputs)
            self._prepare(loaded, request)
        except BaseException as exc:
            timestamps.sent = time.monotonic_ns()
            self._end_here(call, None, exc)
            raise
        return call

    def _end_here(
        self, call: HereCall, outputs: dict[str, Array] | None, failure: BaseException | None
    ) -> None:
        """A call its thread ran (or one refused before) ended: the engine's part of it on
        the loop, as `infer` does for its request."""
        request, loaded = call.request, call.loaded
        try:
            call.lease.give_back()
        finally:
            if outputs is not None:
                self._trace_tensors(request, TENSOR_BACKEND_OUTPUT, outputs)
            loaded.in_flight -= 1
            reason = None if failure is None else failure_reason(failure)
            version = loaded.version_name
            self._finished(request, version, failure is None, 0, False, reason, call.tracing)

    def _finished(
        self,
        request: InferRequest,
        version: str,
        success: bool,
        rows: int,
        cancelled: bool,
        failure: FailureReason | None,
        tracing: RequestTracing | None,
    ) -> None:
        """Tell the observers (and the tracing) that `request` left the engine."""
        name, timestamps = request.model_name, request.timestamps
        for request_finished in self._request_finished:
            request_finished(name, version, timestamps, success, rows, cancelled, failure)
        if tracing is not None:
            tracing.finish(request, version, failure)

    def request_sent(self, request: InferRequest) -> None:
        """A frontend sent the answer of a traced request whose send it stamps
        (`Timestamps.sends`), or failed to: its trace is complete."""
        observer = self._tensor_observer
        if observer is not None:
            observer.request_sent(request.timestamps)

    def _arrived(self, request: InferRequest) -> None:
        """Let the tracer pick the request for Triton's trace files as it arrives."""
        observer = self._tensor_observer
        if observer is not None and observer.traces_on:
            observer.request_arrived(request.model_name, request.timestamps, request.id)

    def _traced(self, request: InferRequest) -> RequestTracing | None:
        """The server's tracing, which starts the span of a request no frontend started (an
        ensemble's step, a model's call, an in-process caller's) when it is traced."""
        tracing = self.tracing
        if tracing is not None and request.span is None and tracing.active:
            tracing.start(request, frontend=False)
        return tracing

    def _prepare(self, loaded: LoadedVersion, request: InferRequest) -> None:
        """Check the request against the version's tensors and apply the configured reshapes."""
        batched = loaded.max_batch_size > 0
        if request.parameters:
            check_reserved(request.parameters)
            callers = request.parameters.get(CALLERS)
            if isinstance(callers, list):  # a model's call (BLS), maybe an ensemble's step of one
                refuse_waiting_caller(request.model_name, callers)
        check_request(request, loaded.inputs, loaded.outputs, loaded.max_batch_size)
        inputs = request.inputs
        for spec in loaded.reshaped_inputs:
            array = inputs.get(spec.name)
            if array is not None:  # an optional input the request left out
                inputs[spec.name] = apply_reshape(array, spec, spec.reshape, batched)

    def _direct_reader(
        self,
        request: InferRequest,
        version: str,
        requested: list[RequestedOutput] | None,
        taker: ResponseTaker,
    ) -> Callable[[StreamItem], bool]:
        """What offers `stream`'s responses to `taker` (`ResponseChannel.read_directly`); the
        last one and a failure are left to `stream`, which ends the request with them."""

        def read(item: StreamItem) -> bool:
            if item.final or item.error is not None:
                return False
            outputs = _selected(requested, item.outputs or {})
            response = InferResponse(request.model_name, version, outputs, request.id, final=False)
            if not taker.offer(response):
                return False
            self._responded(request, outputs)
            return True

        return read

    def _responded(self, request: InferRequest, outputs: dict[str, Array]) -> None:
        """A response of a stream is out: stamped, and its tensors traced."""
        timestamps = request.timestamps
        if timestamps.responses is not None:
            timestamps.responses.append(time.monotonic_ns())
        timestamps.first_response = timestamps.first_response or time.monotonic_ns()
        self._trace_tensors(request, TENSOR_BACKEND_OUTPUT, outputs)

    def _finish(
        self,
        loaded: LoadedVersion,
        outputs: dict[str, Array],
        requested: list[RequestedOutput] | None,
    ) -> dict[str, Array]:
        """Outputs reshaped back to their configured dims; those asked for as classifications
        turned into their top-K strings."""
        batched = loaded.max_batch_size > 0
        for spec in loaded.reshaped_outputs:
            array = outputs.get(spec.name)
            if array is not None:  # an output the request did not ask for
                outputs[spec.name] = apply_reshape(array, spec, spec.dims, batched)
        classify_outputs(requested, outputs, loaded.outputs, batched)
        return outputs

    async def _run_cached(
        self, loaded: LoadedVersion, request: InferRequest, cache: ResponseCache
    ) -> dict[str, Array]:
        """A hit answers from the cache and skips the queue; a miss runs, then is stored (a
        failure never is). Hashed before it runs: an ensemble's steps may release its inputs."""
        timestamps = request.timestamps
        started = time.monotonic_ns()
        key = cache_key(loaded.model_name, loaded.version, request)
        outputs = cache.lookup(key)
        looked_up = time.monotonic_ns()
        if outputs is not None:
            timestamps.cache_hit_ns = max(looked_up - started, 1)
            return outputs
        outputs = self._finish(loaded, await loaded.scheduler.submit(request), request.outputs)
        inserting = time.monotonic_ns()
        cache.insert(key, outputs)
        timestamps.cache_miss_ns = max(looked_up - started + time.monotonic_ns() - inserting, 1)
        return outputs

    def _trace_tensors(
        self, request: InferRequest, activity: str, tensors: dict[str, Array]
    ) -> None:
        """Hand a request's tensors to the tracer while it traces tensors (trace level TENSORS)."""
        observer = self._tensor_observer
        if observer is not None and observer.tensors_on:
            observer.request_tensors(request.model_name, request.timestamps, activity, tensors)


def _end_with(
    execution: asyncio.Future[Any] | None, answered: bool, ended: Callable[[], None]
) -> None:
    """Call `ended` once a decoupled request's stream ended: when its execution ends, if the
    model sent its final response (`answered`; `execute` may go on after it, and the request's
    compute marks are stamped when it returns); at once otherwise, its execution cancelled (a
    queued one leaves its queue)."""
    if execution is None or execution.done():
        ended()
    elif answered:
        execution.add_done_callback(lambda _: ended())
    else:
        execution.cancel()
        ended()


def _as_sent(loaded: LoadedVersion, requested: list[RequestedOutput] | None) -> bool:
    """A streamed response needs no change but its cut to the outputs asked for (`_finish`
    changes nothing): no output is reshaped, none asked for with parameters (a
    classification, or shared memory to write it to)."""
    return not loaded.reshaped_outputs and not any(o.parameters for o in requested or ())


def _selected(
    requested: list[RequestedOutput] | None, outputs: dict[str, Array]
) -> dict[str, Array]:
    """The outputs of one streamed response that the client asked for (all when it named none)."""
    if requested is None:
        return outputs
    return {o.name: outputs[o.name] for o in requested if o.name in outputs}


def _tensor_metadata(spec: ModelTensor, max_batch_size: int) -> TensorMetadata:
    return TensorMetadata(spec.name, spec.datatype, spec.wire_shape(max_batch_size))


def _instance_metadata(instance: Instance) -> InstanceMetadata:
    kind = "KIND_GPU" if instance.device.kind is DeviceKind.GPU else "KIND_CPU"
    return InstanceMetadata(instance.name, kind, str(instance.device))
