"""The same MLP (256->1024->1024->256 FP32, ReLU) served by every backend, next to each
framework's raw in-process rate.

    python benchmarks/backends.py [--seconds 5] [--concurrency 16] [--only onnx torchscript ...]

One server per setup, dynamic batching (max_batch_size 16, 500 us delay), one instance with
one intra-op thread unless the setup says otherwise (TensorFlow's thread pools are
process-wide and left at their defaults, in the server and here). Clients are `concurrency`
processes sending batch-1 requests over HTTP with binary tensors. "raw b16" is the framework
called in this process on batches of 16 rows, in samples/s; "x raw" is the served rate over
it. The numpy model is the Python backend, in the server's process and in 2 worker
processes. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from onnx import numpy_helper

from common import HEADER, generate_models, load_from_processes, served, time_calls

WIDTH = 256
BATCH = 16
Weights = list[tuple[np.ndarray, np.ndarray]]

DYNAMIC = "dynamic_batching { max_queue_delay_microseconds: 500 }"
ONE_THREAD = 'parameters { key: "intra_op_thread_count" value { string_value: "1" } }'
CONFIG = """\
name: "{name}"
{backend}
max_batch_size: 16
input [ {{ name: "{input}", data_type: TYPE_FP32, dims: [ 256 ] }} ]
output [ {{ name: "{output}", data_type: TYPE_FP32, dims: [ 256 ] }} ]
instance_group [ {{ count: {instances}, kind: KIND_CPU }} ]
{DYNAMIC}
{extra}
"""

NUMPY_MODEL = """\
from pathlib import Path

import numpy as np


class InferdModel:
    def initialize(self, context):
        with np.load(Path(context.version_dir) / "weights.npz") as saved:
            self.layers = [(saved[f"w{i}"], saved[f"b{i}"]) for i in range(len(saved) // 2)]

    def execute(self, batch):
        hidden = batch.inputs["input"]
        for index, (weight, bias) in enumerate(self.layers):
            hidden = hidden @ weight + bias
            if index < len(self.layers) - 1:
                hidden = np.maximum(hidden, 0)
        return {"output": hidden}
"""


def mlp_weights(root: Path) -> Weights:
    """The example MLP's weights, read back from the ONNX file every backend is compared to."""
    import onnx

    path = root / "weights" / "model.onnx"
    generate_models.mlp_model(path)
    arrays = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    return [(arrays[f"w{i}"], arrays[f"b{i}"]) for i in range(len(arrays) // 2)]


def numpy_mlp(weights: Weights, x: np.ndarray) -> np.ndarray:
    for index, (weight, bias) in enumerate(weights):
        x = x @ weight + bias
        if index < len(weights) - 1:
            x = np.maximum(x, 0)
    return x


def torch_module(weights: Weights) -> object:
    import torch

    layers: list[torch.nn.Module] = []
    for index, (weight, bias) in enumerate(weights):
        linear = torch.nn.Linear(*weight.shape)
        linear.weight.data = torch.tensor(weight.T)
        linear.bias.data = torch.tensor(bias)
        layers.append(linear)
        if index < len(weights) - 1:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).eval()


def tf_module(weights: Weights) -> object:
    import tensorflow as tf

    class Mlp(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = [(tf.Variable(w), tf.Variable(b)) for w, b in weights]

        @tf.function(input_signature=[tf.TensorSpec([None, WIDTH], tf.float32)])
        def serve(self, input: tf.Tensor) -> dict[str, tf.Tensor]:
            hidden = input
            for index, (weight, bias) in enumerate(self.layers):
                hidden = tf.matmul(hidden, weight) + bias
                if index < len(self.layers) - 1:
                    hidden = tf.nn.relu(hidden)
            return {"output": hidden}

    return Mlp()


@dataclass(frozen=True)
class Setup:
    name: str
    label: str
    backend: str  # the config line naming the backend or platform
    input: str = "input"
    output: str = "output"
    instances: int = 1
    extra: str = ONE_THREAD


SETUPS = {
    "onnx": Setup("mlp_onnx", "ONNX Runtime", 'platform: "onnxruntime_onnx"'),
    "torchscript": Setup(
        "mlp_torchscript",
        "PyTorch TorchScript",
        'platform: "pytorch_libtorch"',
        "INPUT__0",
        "OUTPUT__0",
    ),
    "savedmodel": Setup(
        "mlp_savedmodel", "TensorFlow SavedModel", 'platform: "tensorflow_savedmodel"'
    ),
    "numpy": Setup("mlp_numpy", "Python (numpy), in-process", 'backend: "python"', extra=""),
    "numpy_isolated": Setup(
        "mlp_numpy_isolated",
        "Python (numpy), 2 worker processes",
        'backend: "python"',
        instances=2,
        extra='parameters { key: "isolation" value { string_value: "process" } }',
    ),
}


def write_model(repository: Path, setup: Setup, weights: Weights) -> None:
    folder = repository / setup.name
    version = folder / "1"
    version.mkdir(parents=True)
    if setup.name == "mlp_onnx":
        generate_models.mlp_model(version / "model.onnx")
    elif setup.name == "mlp_torchscript":
        import torch

        torch.jit.save(torch.jit.script(torch_module(weights)), str(version / "model.pt"))
    elif setup.name == "mlp_savedmodel":
        import tensorflow as tf

        module = tf_module(weights)
        tf.saved_model.save(
            module, str(version / "model.savedmodel"), signatures={"serving_default": module.serve}
        )
    else:
        (version / "model.py").write_text(NUMPY_MODEL)
        np.savez(
            version / "weights.npz",
            **{f"w{i}": w for i, (w, _) in enumerate(weights)},
            **{f"b{i}": b for i, (_, b) in enumerate(weights)},
        )
    config = CONFIG.format(
        name=setup.name,
        backend=setup.backend,
        input=setup.input,
        output=setup.output,
        instances=setup.instances,
        DYNAMIC=DYNAMIC,
        extra=setup.extra,
    )
    (folder / "config.pbtxt").write_text(config)


def raw_call(setup: Setup, weights: Weights, x: np.ndarray) -> Callable[[], object]:
    """One batch through the framework in this process, one intra-op thread."""
    if setup.name == "mlp_torchscript":
        import torch

        torch.set_num_threads(1)
        module = torch.jit.script(torch_module(weights))
        tensor = torch.from_numpy(x)

        def run_torch() -> object:
            with torch.inference_mode():
                return module(tensor).numpy()

        return run_torch
    if setup.name == "mlp_savedmodel":
        import tensorflow as tf

        module: Any = tf_module(weights)  # held here: its tf.function keeps only a weak ref
        tensor = tf.constant(x)
        return lambda: module.serve(tensor)["output"].numpy()
    if setup.name.startswith("mlp_numpy"):
        return lambda: numpy_mlp(weights, x)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    path = Path(tempfile.mkdtemp()) / "model.onnx"
    generate_models.mlp_model(path)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"input": x})


def http_call(url: str, setup: Setup) -> Callable[[], Callable[[], object]]:
    def make_call() -> Callable[[], object]:
        import tritonclient.http as httpclient

        client = httpclient.InferenceServerClient(url)
        x = np.random.default_rng(0).standard_normal((1, WIDTH)).astype(np.float32)
        item = httpclient.InferInput(setup.input, [1, WIDTH], "FP32")
        item.set_data_from_numpy(x, binary_data=True)
        output = httpclient.InferRequestedOutput(setup.output, binary_data=True)
        return lambda: client.infer(setup.name, [item], outputs=[output])

    return make_call


def check_answer(url: str, setup: Setup, weights: Weights) -> None:
    """The served model computes the same MLP (a benchmark of a wrong model measures nothing).
    Plain JSON over urllib: a tritonclient.http client here would start a gevent hub that the
    next setup's forked clients would inherit."""
    x = np.random.default_rng(1).standard_normal((1, WIDTH)).astype(np.float32)
    body = {
        "inputs": [
            {
                "name": setup.input,
                "shape": [1, WIDTH],
                "datatype": "FP32",
                "data": x.ravel().tolist(),
            }
        ]
    }
    request = urllib.request.Request(
        f"http://{url}/v2/models/{setup.name}/infer", data=json.dumps(body).encode()
    )
    with urllib.request.urlopen(request) as response:
        answer = json.load(response)["outputs"][0]
    got = np.asarray(answer["data"], np.float32).reshape(answer["shape"])
    np.testing.assert_allclose(got, numpy_mlp(weights, x), rtol=1e-3, atol=1e-3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per setup")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--only", nargs="*", choices=list(SETUPS), default=list(SETUPS))
    args = parser.parse_args()
    print(f"{HEADER} {'raw b16/s':>10} {'x raw':>7}")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        weights = mlp_weights(root)
        x16 = np.random.default_rng(0).standard_normal((BATCH, WIDTH)).astype(np.float32)
        for key in args.only:
            setup = SETUPS[key]
            raw = time_calls(setup.label, raw_call(setup, weights, x16), args.seconds)
            raw_rate = raw.throughput * BATCH
            repository = root / setup.name
            write_model(repository, setup, weights)
            with served(repository) as server:
                check_answer(server.http_url, setup, weights)
                figures = load_from_processes(
                    http_call(server.http_url, setup),
                    args.concurrency,
                    args.seconds,
                    f"{setup.label}, c{args.concurrency}",
                )
            print(f"{figures.row()} {raw_rate:10.0f} {figures.throughput / raw_rate:7.3f}")


if __name__ == "__main__":
    main()
