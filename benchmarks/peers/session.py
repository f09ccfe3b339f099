"""The ONNX Runtime session every peer server builds: one file, one intra-op thread, the same
provider. Runs inside the peers' virtual environments, so it needs only onnxruntime and numpy."""

from __future__ import annotations

import onnxruntime as ort


def onnx_session(model: str, device: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(model, options, providers=providers)
