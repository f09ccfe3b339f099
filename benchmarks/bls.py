"""What a BLS hop costs: a Python model calling the example MLP through BLS, vs the client
calling the MLP directly, in one run (one server, batch-1 requests, one gRPC client).

    python benchmarks/bls.py [--seconds 5]

Rows: the MLP called directly; a Python model answering without calling anything (what the
client's hop into a Python model costs); a Python model calling the MLP through BLS, in the
server's process and in a worker process. Derived figures:

- "added by Python model + BLS": the BLS row minus the direct row (p50 and p99 of each);
- per BLS hop: `exec()` as the model timed it, minus that MLP request's time in the server
  (received to sent, from its `--log-verbose` trace line): what the call adds around the
  request; and minus the MLP's own execution alone (`compute_infer` of the same line): all a
  call costs beyond the work it asks for (checks, scheduler, thread hops). In process, a call
  that finds the MLP idle runs it on the model's own thread, so its time in the server then
  holds the hop back to the model; the second figure does not depend on where that lies.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from common import HEADER, Figures, served, time_calls, write_mlp_repository

WIDTH = 256

MLP_CONFIG = """
name: "mlp"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "input", data_type: TYPE_FP32, dims: [ 256 ] } ]
output [ { name: "output", data_type: TYPE_FP32, dims: [ 256 ] } ]
instance_group [ { count: 1, kind: KIND_CPU } ]
"""

# Also answers how long its `exec()` took (EXEC_US), measured around the call in the model.
BLS = """
import time
import numpy as np
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            call = pb_utils.InferenceRequest(
                model_name="mlp", requested_output_names=["output"], inputs=request.inputs()
            )
            start = time.perf_counter()
            answer = call.exec()
            took = np.array([[(time.perf_counter() - start) * 1e6]])
            if answer.has_error():
                raise pb_utils.TritonModelException(answer.error().message())
            outputs = [*answer.output_tensors(), pb_utils.Tensor("EXEC_US", took)]
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
"""

PASS_THROUGH = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("output", r.inputs()[0].as_numpy())])
            for r in requests
        ]
"""


def _python_model(repository: Path, name: str, code: str, isolation: str) -> None:
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "1" / "model.py").write_text(textwrap.dedent(code))
    timed = '{ name: "EXEC_US", data_type: TYPE_FP64, dims: [ 1 ] }, ' if "EXEC_US" in code else ""
    (repository / name / "config.pbtxt").write_text(
        MLP_CONFIG.replace('"mlp"', f'"{name}"')
        .replace('platform: "onnxruntime_onnx"', 'backend: "python"')
        .replace("output [ ", f"output [ {timed}")
        + f'parameters {{ key: "isolation" value: {{ string_value: "{isolation}" }} }}\n'
    )


_MLP_TRACE = re.compile(
    r"request model=mlp version=\S+ ok total_us=([0-9.]+) .* compute_infer=([0-9.]+)"
)


def _mlp_request_us(log: list[str], start: int) -> list[tuple[float, float]]:
    """Each MLP request's time in the server (received to sent: checks, queue, compute) and
    its execution, in µs, from the trace lines (`--log-verbose 1`) logged after line `start`."""
    return [
        (float(m.group(1)), float(m.group(2)))
        for line in log[start:]
        if (m := _MLP_TRACE.search(line))
    ]


def _percentiles(values: list[float]) -> str:
    return f"{np.percentile(values, 50):9.1f} {np.percentile(values, 99):9.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    import tritonclient.grpc as grpcclient

    with tempfile.TemporaryDirectory() as folder:
        repository = Path(folder)
        write_mlp_repository(repository, MLP_CONFIG)
        _python_model(repository, "pass_through", PASS_THROUGH, "none")
        _python_model(repository, "bls_mlp", BLS, "none")
        _python_model(repository, "bls_mlp_isolated", BLS, "process")
        with served(repository, "--log-verbose", "1") as server:
            client = grpcclient.InferenceServerClient(server.grpc_url)
            tensor = grpcclient.InferInput("input", [1, WIDTH], "FP32")
            tensor.set_data_from_numpy(np.ones((1, WIDTH), dtype=np.float32))

            def timed(model: str, label: str) -> Figures:
                return time_calls(label, lambda: client.infer(model, [tensor]), args.seconds)

            def hop(model: str, label: str) -> tuple[Figures, list[float], list[float]]:
                """The client's figures, and per call: exec() as the model timed it minus that
                MLP request's time in the server, and minus its execution."""
                took: list[float] = []
                start = len(server.log)

                def call() -> None:
                    took.append(float(client.infer(model, [tensor]).as_numpy("EXEC_US")[0, 0]))

                figures = time_calls(label, call, args.seconds)
                time.sleep(0.5)  # the last trace lines reach the log
                served = _mlp_request_us(server.log, start)
                pairs = list(zip(took, served, strict=False))
                return figures, [t - s for t, (s, _) in pairs], [t - c for t, (_, c) in pairs]

            direct = timed("mlp", "client -> mlp")
            through = timed("pass_through", "client -> python (no call)")
            in_process, *in_process_hops = hop("bls_mlp", "client -> python -> BLS -> mlp")
            isolated, *isolated_hops = hop(
                "bls_mlp_isolated", "client -> python (worker) -> BLS -> mlp"
            )
            client.close()
    print(HEADER)
    for row in (direct, through, in_process, isolated):
        print(row.row(direct))
    print("\nper BLS hop (us)               p50       p99   (exec() in the model minus its mlp")
    print("                                                 request's time in the server;")
    print("                                                 minus the mlp's execution)")
    for mode, bls, (hops, beyond) in (
        ("in-process", in_process, in_process_hops),
        ("worker process", isolated, isolated_hops),
    ):
        print(f"{mode:<24} {_percentiles(hops)}")
        print(f"  beyond its execution   {_percentiles(beyond)}")
        added = [(bls.percentile(q) - direct.percentile(q)) * 1000 for q in (50, 99)]
        print(f"  client sees, vs mlp direct  {added[0]:9.1f} {added[1]:9.1f}")


if __name__ == "__main__":
    main()
