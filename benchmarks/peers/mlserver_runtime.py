"""MLServer has no ONNX runtime, so this small custom one calls ONNX Runtime. peers.py writes the
settings.json and model-settings.json (the model file, the device, MLServer's adaptive batching
limits, the model's Triton-form config) in a folder of their own and starts MLServer there
(benchmarks/peers/mlserver_server.py)."""

from __future__ import annotations

from typing import Any

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.handlers.custom import custom_handler
from mlserver.types import InferenceRequest, InferenceResponse
from session import onnx_session


class OnnxMLP(MLModel):
    async def load(self) -> bool:
        extra = self.settings.parameters.extra if self.settings.parameters else None
        self._extra = extra or {}
        self._session = onnx_session(
            str(self.settings.parameters.uri), self._extra.get("device", "cpu")
        )
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        data = NumpyCodec.decode_input(payload.inputs[0])
        output = NumpyCodec.encode_output("output", self._session.run(None, {"input": data})[0])
        # Without the codec's hint ({"content_type": "np"}): Triton's C++ HTTP client takes any
        # output "parameters" for its binary-data ones and fails on the missing size.
        output.parameters = None
        return InferenceResponse(model_name=self.name, outputs=[output])

    # perf_analyzer reads the model's config (Triton's extension to the V2 protocol, which
    # MLServer does not implement) once before it sends load; MLServer's own custom-endpoint
    # mechanism answers it over HTTP (mlserver_server.py answers it over gRPC).
    @custom_handler(rest_path="/v2/models/mlp/config", rest_method="GET")
    async def triton_config(self) -> dict[str, Any]:
        config: dict[str, Any] = self._extra["triton_config"]
        return config
