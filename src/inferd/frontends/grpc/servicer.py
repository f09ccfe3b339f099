"""The KServe V2 gRPC frontend: `inference.GRPCInferenceService`, one method per RPC.

Every RPC runs through `_rpc`, so an inferd error becomes the status of `errors.grpc_status`
and a bug of ours becomes INTERNAL; RPCs of extensions this server does not offer raise
`Unsupported` and answer UNIMPLEMENTED.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias, TypeVar

import grpc
from tritonclient.grpc import service_pb2 as pb

from inferd import __version__
from inferd.core.errors import (
    DecoupledModel,
    InferdError,
    InvalidArgument,
    NotFound,
    Unsupported,
)
from inferd.core.statistics import Duration, VersionStatistics
from inferd.core.tracing import TRACEPARENT, TRACESTATE, TraceParent, trace_parent
from inferd.core.types import InferRequest, InferResponse
from inferd.engine.engine import Engine
from inferd.engine.model_files import is_file_parameter
from inferd.frontends.grpc.codec import decode_infer_request, encode_infer_response
from inferd.frontends.grpc.errors import grpc_status, status_details
from inferd.frontends.grpc.known_requests import KnownRequests
from inferd.frontends.grpc.malformed import Malformed
from inferd.frontends.grpc.runtime_settings import log_settings, trace_setting
from inferd.frontends.grpc.stream import StreamCall
from inferd.frontends.grpc.unary_headers import UnaryHeaders
from inferd.frontends.identity import DEFAULT_SERVER_NAME, extensions
from inferd.frontends.load_errors import load_failure
from inferd.frontends.shared_memory import DISABLED, SharedMemoryRegistry
from inferd.frontends.trace_models import check_traced_model

logger = logging.getLogger(__name__)

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
_Frontend = TypeVar("_Frontend", bound="GrpcFrontend")
_Handler = Callable[[_Frontend, Any, Any], Awaitable[Any]]


def _rpc(method: _Handler[_Frontend]) -> _Handler[_Frontend]:
    """Answer inferd errors with their mapped status, anything else with INTERNAL."""

    @functools.wraps(method)
    async def handle(self: _Frontend, request: Any, context: Any) -> Any:
        try:
            if isinstance(request, Malformed):
                raise request.error()
            return await method(self, request, context)
        except InferdError as exc:
            await context.abort(grpc_status(exc), status_details(exc.message))
        except Exception as exc:  # a bug of ours: answer, log, keep serving
            logger.exception("unhandled error in %s", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {exc!r}")

    return handle


class GrpcFrontend:
    """Servicer of `inference.GRPCInferenceService` for one engine (method names are the RPCs)."""

    def __init__(
        self,
        engine: Engine,
        shared_memory: SharedMemoryRegistry = DISABLED,
        server_name: str = DEFAULT_SERVER_NAME,
    ) -> None:
        self._engine = engine
        self._shared_memory = shared_memory
        self._server_name = server_name
        self._extensions = extensions(shared_memory, engine.statistics_enabled, engine.controls)
        self._requests = KnownRequests()
        self._answers = UnaryHeaders()

    # ---- health and metadata ---------------------------------------------------------------

    @_rpc
    async def ServerLive(self, request: Any, context: Context) -> Any:
        return pb.ServerLiveResponse(live=self._engine.is_live())

    @_rpc
    async def ServerReady(self, request: Any, context: Context) -> Any:
        return pb.ServerReadyResponse(ready=self._engine.is_ready())

    @_rpc
    async def ModelReady(self, request: Any, context: Context) -> Any:
        try:
            ready = self._engine.model_ready(request.name, request.version)
        except NotFound:
            ready = False  # over gRPC an unknown model is "not ready", not an error status
        return pb.ModelReadyResponse(ready=ready)

    @_rpc
    async def ServerMetadata(self, request: Any, context: Context) -> Any:
        return pb.ServerMetadataResponse(
            name=self._server_name, version=__version__, extensions=self._extensions
        )

    @_rpc
    async def ModelMetadata(self, request: Any, context: Context) -> Any:
        metadata = self._engine.model_metadata(request.name, request.version)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=metadata.name,
            versions=metadata.versions,
            platform=metadata.platform,
            inputs=[
                tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in metadata.inputs
            ],
            outputs=[
                tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in metadata.outputs
            ],
        )

    @_rpc
    async def ModelConfig(self, request: Any, context: Context) -> Any:
        return pb.ModelConfigResponse(
            config=self._engine.model_config(request.name, request.version)
        )

    # ---- inference -------------------------------------------------------------------------

    @_rpc
    async def ModelInfer(self, request: bytes, context: Context) -> Any:
        """`request`: the call's bytes (no deserializer), decoded by `known_requests.py`."""
        received = time.monotonic_ns()
        decoded = self._requests.decode(request, self._shared_memory)
        return await self._serve(decoded, received, context, unary=True)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[Any], context: Context
    ) -> AsyncIterator[Any]:
        """Every response of every request, as `stream.py` describes; when the server traces
        requests as spans, each continues the trace context of the call's metadata."""
        if self._engine.tracing is None:
            call = StreamCall(self._engine, self._shared_memory, self._infer)
        else:
            infer = functools.partial(self._infer, context=context)
            call = StreamCall(self._engine, self._shared_memory, infer, _trace_parent(context))
        async for response in call.responses(request_iterator):
            yield response

    async def _infer(self, message: Any, context: Context | None = None) -> Any:
        """One message of a stream (whose answer's header the stream changes: it is built for
        it alone); `context` where its requests are traced as spans."""
        received = time.monotonic_ns()
        if isinstance(message, Malformed):
            raise message.error()
        request = decode_infer_request(message, self._shared_memory)
        return await self._serve(request, received, context, unary=False)

    async def _serve(
        self, request: InferRequest, received: int, context: Context | None, unary: bool
    ) -> Any:
        """Run one decoded request (of a unary call, or of a stream's message) and encode its
        answer."""
        request.timestamps.received = received
        request.timestamps.protocol = "GRPC"
        request.timestamps.sends = unary  # stamped by `_answer_infer`
        tracing = self._engine.tracing
        if context is not None and tracing is not None and tracing.active:
            request.trace_parent = _trace_parent(context)
            tracing.start(request, frontend=True)
        try:
            return await self._answer_infer(request, unary, context)
        finally:
            if request.span is not None:  # traced: its span ends once answered
                request.span.responded()

    async def _answer_infer(
        self, request: InferRequest, unary: bool, context: Context | None
    ) -> Any:
        try:
            response = await self._engine.infer(request)
        except DecoupledModel:
            raise Unsupported(
                "ModelInfer RPC doesn't support models with decoupled transaction policy"
            ) from None
        if unary:
            if request.timestamps.trace_id and context is not None:
                return self._answer_traced(request, response, context)
            return self._answers.encode(response, request.outputs, self._shared_memory)
        message = pb.ModelInferResponse()
        return encode_infer_response(response, message, request.outputs, self._shared_memory)

    def _answer_traced(
        self, request: InferRequest, response: InferResponse, context: Context
    ) -> Any:
        """A traced request's unary answer, its send stamped as Triton's GRPC_SEND_START (it
        goes to grpc) and GRPC_SEND_END (the call ended): its trace is complete then."""
        timestamps = request.timestamps

        def ended(_: object) -> None:
            if timestamps.send_start:  # else its encoding failed
                timestamps.send_end = time.monotonic_ns()
            self._engine.request_sent(request)

        context.add_done_callback(ended)  # first: it runs however the call ends
        answer = self._answers.encode(response, request.outputs, self._shared_memory)
        timestamps.send_start = time.monotonic_ns()
        return answer

    # ---- model repository ------------------------------------------------------------------

    @_rpc
    async def RepositoryIndex(self, request: Any, context: Context) -> Any:
        _check_repository_name(request.repository_name)
        index = pb.RepositoryIndexResponse.ModelIndex
        rows = self._engine.repository_index(ready_only=request.ready)
        return pb.RepositoryIndexResponse(
            models=[
                index(name=r.name, version=r.version, state=r.state.value, reason=r.reason)
                for r in rows
            ]
        )

    @_rpc
    async def RepositoryModelLoad(self, request: Any, context: Context) -> Any:
        _check_repository_name(request.repository_name)
        with load_failure(request.model_name):
            override, files = _load_request(request.parameters)
            await self._engine.control_load(request.model_name, override, files)
        return pb.RepositoryModelLoadResponse()

    @_rpc
    async def RepositoryModelUnload(self, request: Any, context: Context) -> Any:
        _check_repository_name(request.repository_name)
        await self._engine.control_unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    # ---- statistics ------------------------------------------------------------------------

    @_rpc
    async def ModelStatistics(self, request: Any, context: Context) -> Any:
        snapshot = self._engine.model_statistics(request.name, request.version)
        return pb.ModelStatisticsResponse(model_stats=[_statistics_message(s) for s in snapshot])

    # ---- shared memory (frontends/shared_memory.py) -----------------------------------------

    @_rpc
    async def SystemSharedMemoryStatus(self, request: Any, context: Context) -> Any:
        status = pb.SystemSharedMemoryStatusResponse.RegionStatus
        regions = self._shared_memory.status(request.name)
        return pb.SystemSharedMemoryStatusResponse(
            regions={
                r.name: status(name=r.name, key=r.key, offset=r.offset, byte_size=r.byte_size)
                for r in regions
            }
        )

    @_rpc
    async def SystemSharedMemoryRegister(self, request: Any, context: Context) -> Any:
        self._shared_memory.register(request.name, request.key, request.offset, request.byte_size)
        return pb.SystemSharedMemoryRegisterResponse()

    @_rpc
    async def SystemSharedMemoryUnregister(self, request: Any, context: Context) -> Any:
        self._shared_memory.unregister(request.name)
        return pb.SystemSharedMemoryUnregisterResponse()

    @_rpc
    async def CudaSharedMemoryStatus(self, request: Any, context: Context) -> Any:
        status = pb.CudaSharedMemoryStatusResponse.RegionStatus
        regions = self._shared_memory.cuda_status(request.name)
        return pb.CudaSharedMemoryStatusResponse(
            regions={
                r.name: status(name=r.name, device_id=r.device_id, byte_size=r.byte_size)
                for r in regions
            }
        )

    @_rpc
    async def CudaSharedMemoryRegister(self, request: Any, context: Context) -> Any:
        self._shared_memory.register_cuda(
            request.name, request.raw_handle, request.device_id, request.byte_size
        )
        return pb.CudaSharedMemoryRegisterResponse()

    @_rpc
    async def CudaSharedMemoryUnregister(self, request: Any, context: Context) -> Any:
        self._shared_memory.unregister_cuda(request.name)
        return pb.CudaSharedMemoryUnregisterResponse()

    # ---- trace and logging extensions -------------------------------------------------------

    @_rpc
    async def TraceSetting(self, request: Any, context: Context) -> Any:
        if request.model_name:
            check_traced_model(self._engine, request.model_name)  # an unknown model: NOT_FOUND
        return trace_setting(self._engine.controls.trace, request)

    @_rpc
    async def LogSettings(self, request: Any, context: Context) -> Any:
        return log_settings(self._engine.controls.logging, request)


def _trace_parent(context: Context) -> TraceParent | None:
    """The W3C trace context of the call's metadata (None without one)."""
    metadata = dict(context.invocation_metadata() or ())
    return trace_parent(metadata.get(TRACEPARENT), metadata.get(TRACESTATE))


def _check_repository_name(name: str) -> None:
    if name:
        raise Unsupported(f"only the server's own repository is served, not '{name}'")


def _load_request(parameters: Any) -> tuple[dict[str, Any] | None, dict[str, bytes]]:
    """The `config` parameter of a load request (JSON model config) and its `file:` ones
    (bytes), as Triton accepts them."""
    files = {key: _file(key, value) for key, value in parameters.items() if is_file_parameter(key)}
    if "config" not in parameters:
        return None, files
    text = parameters["config"].string_param
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"the 'config' parameter is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise InvalidArgument("the 'config' parameter must be a JSON object")
    return config, files


def _file(key: str, parameter: Any) -> bytes:
    if parameter.WhichOneof("parameter_choice") != "bytes_param":  # Triton's wording
        raise InvalidArgument(f"File parameter '{key}' must have bytes type for its value")
    return bytes(parameter.bytes_param)


def _duration(duration: Duration) -> Any:
    return pb.StatisticDuration(count=duration.count, ns=duration.ns)


def _statistics_message(stats: VersionStatistics) -> Any:
    return pb.ModelStatistics(
        name=stats.name,
        version=stats.version,
        last_inference=stats.last_inference,
        inference_count=stats.inference_count,
        execution_count=stats.execution_count,
        inference_stats=pb.InferStatistics(
            success=_duration(stats.success),
            fail=_duration(stats.fail),
            queue=_duration(stats.queue),
            compute_input=_duration(stats.compute_input),
            compute_infer=_duration(stats.compute_infer),
            compute_output=_duration(stats.compute_output),
            cache_hit=_duration(stats.cache_hit),
            cache_miss=_duration(stats.cache_miss),
        ),
        batch_stats=[
            pb.InferBatchStatistics(
                batch_size=b.batch_size,
                compute_input=_duration(b.compute_input),
                compute_infer=_duration(b.compute_infer),
                compute_output=_duration(b.compute_output),
            )
            for b in stats.batch_stats
        ],
    )
