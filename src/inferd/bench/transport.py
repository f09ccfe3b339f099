"""One asyncio client per protocol, both the official `tritonclient` ones.

Only V2 endpoints are used: model metadata, model config and statistics (Triton's extensions,
both optional: a server without them still gets benchmarked), and infer. Request tensors are
wrapped into `InferInput`s once (`prepare`), so the timed loop only sends.

Streaming (`--streaming`) goes over gRPC `ModelStreamInfer`, one call per request, over the
generate extension's SSE endpoint (`sse.py`), or over an OpenAI `/v1` route (`openai_api.py`);
each yields once per response as it arrives.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from inferd.bench.inputs import InputMetadata, ModelInfo, RequestData
from inferd.bench.options import BenchOptions
from inferd.bench.options import Protocol as WireProtocol
from inferd.core.datatypes import v2_datatype
from inferd.core.errors import InferdError, InvalidArgument, NotFound, Unavailable

# Without a config endpoint, a model whose inputs all lead with -1 is taken to batch, with no
# known limit on the batch size.
_UNKNOWN_MAX_BATCH = 2**31 - 1
_NOT_FOUND_STATUSES = ("404", "StatusCode.NOT_FOUND")
_FINAL = "triton_final_response"


class Transport(Protocol):
    async def model_info(self) -> ModelInfo: ...

    async def statistics(self) -> dict[str, Any] | None:
        """Triton's statistics document for the model, or None if the server has none."""

    def prepare(self, request: RequestData) -> Any:
        """The protocol's request objects for `request`, built once and sent many times."""

    async def infer(self, prepared: Any) -> None: ...

    async def close(self) -> None: ...


class StreamTransport(Transport, Protocol):
    def stream(self, prepared: Any) -> AsyncIterator[None]:
        """Send one request; yield once per response (with outputs) as each arrives.

        Raises on a failure, also one after some responses arrived (an error mid-stream).
        """


def open_transport(
    protocol: WireProtocol, url: str, model: str, version: str, connections: int
) -> Transport:
    """A client for `model`; `connections` bounds HTTP's connection pool (0: unbounded)."""
    if protocol == "grpc":
        return GrpcTransport(url, model, version)
    return HttpTransport(url, model, version, connections)


def open_stream_transport(options: BenchOptions, connections: int) -> StreamTransport:
    """A streaming client: gRPC `ModelStreamInfer`, HTTP's `generate_stream` (SSE), or an
    OpenAI `/v1` route with `stream: true`."""
    url, model, version = options.url, options.model, options.model_version
    if options.protocol == "grpc":
        return GrpcTransport(url, model, version)
    if options.protocol == "openai":
        from inferd.bench.openai_api import OpenAITransport

        return OpenAITransport(
            url, model, connections, options.openai_route, options.prompt, options.max_tokens
        )
    from inferd.bench.sse import SseTransport

    return SseTransport(url, model, version, connections)


class _TritonTransport:
    """What both protocols share; the subclass names its tritonclient module and client."""

    def __init__(self, module: Any, client: Any, url: str, model: str, version: str) -> None:
        self._module = module
        self._client = client
        self._url = url
        self._model = model
        self._version = version
        self._outputs: list[str] = []

    async def model_info(self) -> ModelInfo:
        try:
            metadata = await self._metadata()
        except Exception as error:
            raise _setup_error(error, f"model '{self._model}' at {self._url}") from None
        inputs = tuple(
            InputMetadata(item["name"], item["datatype"], tuple(int(dim) for dim in item["shape"]))
            for item in metadata.get("inputs", [])
        )
        if not inputs:
            raise InvalidArgument(f"model '{self._model}' declares no inputs")
        self._outputs = [item["name"] for item in metadata.get("outputs", [])]
        try:
            config = await self._config()
            max_batch_size = int(config.get("max_batch_size", 0))
            decoupled = bool(config.get("model_transaction_policy", {}).get("decoupled", False))
        except Exception:
            batches = all(spec.shape and spec.shape[0] == -1 for spec in inputs)
            max_batch_size = _UNKNOWN_MAX_BATCH if batches else 0
            decoupled = False  # unknown: a unary request to a decoupled model fails as an error
        return ModelInfo(self._model, self._version, inputs, max_batch_size, decoupled)

    async def statistics(self) -> dict[str, Any] | None:
        try:
            document = await self._statistics()
        except Exception:
            return None
        return document if isinstance(document, dict) else None

    def prepare(self, request: RequestData) -> Any:
        inputs = []
        for name, array in request.items():
            item = self._module.InferInput(name, list(array.shape), _datatype_of(array, name))
            self._set_data(item, array)
            inputs.append(item)
        outputs = [self._requested_output(name) for name in self._outputs]
        return inputs, outputs

    async def infer(self, prepared: Any) -> None:
        inputs, outputs = prepared
        await self._client.infer(
            self._model, inputs, model_version=self._version, outputs=outputs or None
        )

    async def close(self) -> None:
        await self._client.close()

    # Protocol-specific calls, overridden below.
    async def _metadata(self) -> dict[str, Any]:
        raise NotImplementedError

    async def _config(self) -> dict[str, Any]:
        raise NotImplementedError

    async def _statistics(self) -> Any:
        raise NotImplementedError

    def _set_data(self, item: Any, array: Any) -> None:
        item.set_data_from_numpy(array)

    def _requested_output(self, name: str) -> Any:
        return self._module.InferRequestedOutput(name)


class HttpTransport(_TritonTransport):
    def __init__(self, url: str, model: str, version: str, connections: int) -> None:
        import tritonclient.http as http
        import tritonclient.http.aio as aio

        super().__init__(
            http, aio.InferenceServerClient(url, conn_limit=connections), url, model, version
        )

    async def _metadata(self) -> dict[str, Any]:
        return dict(await self._client.get_model_metadata(self._model, self._version))

    async def _config(self) -> dict[str, Any]:
        return dict(await self._client.get_model_config(self._model, self._version))

    async def _statistics(self) -> Any:
        return await self._client.get_inference_statistics(self._model, self._version)

    # Binary tensors both ways: no JSON encoding of numbers on either side.
    def _set_data(self, item: Any, array: Any) -> None:
        item.set_data_from_numpy(array, binary_data=True)

    def _requested_output(self, name: str) -> Any:
        return self._module.InferRequestedOutput(name, binary_data=True)


class GrpcTransport(_TritonTransport):
    def __init__(self, url: str, model: str, version: str) -> None:
        import tritonclient.grpc as grpc
        import tritonclient.grpc.aio as aio

        super().__init__(grpc, aio.InferenceServerClient(url), url, model, version)

    async def _metadata(self) -> dict[str, Any]:
        return dict(await self._client.get_model_metadata(self._model, self._version, as_json=True))

    async def _config(self) -> dict[str, Any]:
        document = await self._client.get_model_config(self._model, self._version, as_json=True)
        return dict(document.get("config", {}))

    async def _statistics(self) -> Any:
        return await self._client.get_inference_statistics(self._model, self._version, as_json=True)

    async def stream(self, prepared: Any) -> AsyncIterator[None]:
        # One call per request: the call ends once the server has sent the request's last
        # response, so the end is seen without `triton_enable_empty_final_response` (a
        # parameter the aio client reserves), and an in-stream error is this request's.
        inputs, outputs = prepared
        request = {
            "model_name": self._model, "model_version": self._version, "inputs": inputs,
            "outputs": outputs or None,
        }  # fmt: skip
        async for result, error in self._client.stream_infer(_one(request)):
            if error is not None:
                raise error
            if not _final_alone(result.get_response()):
                yield


def _final_alone(response: Any) -> bool:
    """Whether a streamed response is only the final flag: no response of the model's own."""
    parameters = response.parameters
    final = _FINAL in parameters and parameters[_FINAL].bool_param
    return bool(final and not response.outputs)


async def _one(request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    yield request


def _datatype_of(array: Any, name: str) -> str:
    try:
        return v2_datatype(array.dtype)
    except InferdError as error:
        raise InvalidArgument(f"input '{name}': {error.message}") from None


def _setup_error(error: Exception, what: str) -> InferdError:
    """A clear message for a failed setup call: unknown model, or no server at the URL."""
    status = str(getattr(error, "status", lambda: "")() or "")
    message = getattr(error, "message", lambda: str(error))() or str(error)
    if status in _NOT_FOUND_STATUSES:
        return NotFound(f"{what}: {message}")
    return Unavailable(f"{what}: {message or type(error).__name__}")
