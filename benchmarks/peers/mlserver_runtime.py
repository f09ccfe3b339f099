"""MLServer has no ONNX runtime, so this small custom one calls ONNX Runtime. peers.py writes the
settings.json and model-settings.json (the model file, the device, MLServer's adaptive batching
limits) next to a copy of this file and starts `mlserver start` there."""

from __future__ import annotations

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from session import onnx_session


class OnnxMLP(MLModel):
    async def load(self) -> bool:
        extra = self.settings.parameters.extra if self.settings.parameters else None
        device = (extra or {}).get("device", "cpu")
        self._session = onnx_session(str(self.settings.parameters.uri), device)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        data = NumpyCodec.decode_input(payload.inputs[0])
        result = self._session.run(None, {"input": data})[0]
        return InferenceResponse(
            model_name=self.name, outputs=[NumpyCodec.encode_output("output", result)]
        )
