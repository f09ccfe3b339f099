"""The servers benchmarks/peers.py compares: their virtual environments, how each is started
(pinned with taskset), when it is ready, how much CPU its process tree used, and how it stops."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import venv
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2

from common import ROOT, free_port

PEERS = ROOT / "benchmarks" / "peers"
CACHE = Path(os.environ.get("INFERD_PEERS_CACHE", Path.home() / ".cache" / "inferd-peers"))
MAX_BATCH = 16
DELAY_US = 500
INFERD_CONFIG = """
max_batch_size: {max_batch}
instance_group [ {{ count: 1, kind: {kind} }} ]
parameters {{ key: "intra_op_thread_count" value {{ string_value: "1" }} }}
{batching}
"""


def peer_python(name: str, device: str) -> Path:
    """The Python of `name`'s own virtual environment under CACHE, made (and its requirements
    installed) on first use; reused while its requirements stay the same."""
    requirements = (PEERS / f"requirements-{name}.txt").read_text()
    folder = CACHE / name
    if device == "cuda":
        requirements = requirements.replace("onnxruntime==", "onnxruntime-gpu==")
        folder = CACHE / f"{name}-cuda"
    marker = folder / "requirements.txt"
    python = folder / "bin" / "python"
    if marker.is_file() and marker.read_text() == requirements and python.exists():
        return python
    print(f"Installing {name}'s requirements into {folder} (once) ...", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    venv.create(folder, with_pip=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as wanted:
        wanted.write(requirements)
        wanted.flush()
        subprocess.run([python, "-m", "pip", "install", "-q", "-r", wanted.name], check=True)
    marker.write_text(requirements)
    return python


def installed_version(python: Path, distribution: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    return subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip()


@dataclass
class Server:
    """A started server: the V2-style URLs it answers on and the root of its process tree."""

    name: str
    process: subprocess.Popen[bytes]
    http: str  # host:port
    grpc: str | None
    log: Path

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server's whole process tree so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in process_tree(self.process.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # exited in between
                continue
            total += int(fields[11]) + int(fields[12])
        return total / ticks


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry.name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def infer_body(rows: list[float]) -> bytes:
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, len(rows)], "data": rows}
    return json.dumps({"inputs": [tensor]}).encode()


def _wait_ready(server: Server, timeout_s: float) -> None:
    """Until a real V2 JSON inference answers 200 (every server here takes one)."""
    deadline = time.monotonic() + timeout_s
    url = f"http://{server.http}/v2/models/mlp/infer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        request = urllib.request.Request(url, infer_body([0.0] * 256), method="POST")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{server.name} did not start; its log:\n{server.log.read_text()[-3000:]}")


@contextmanager
def started(
    name: str,
    command: list[str],
    http: str,
    grpc: str | None,
    cpus: str,
    workdir: Path | None = None,
    peer: bool = True,
) -> Iterator[Server]:
    """Run `command` pinned to `cpus` (its children inherit the pinning) until the block ends,
    in `workdir` (a folder of its own, removed at the end) if given."""
    log = Path(tempfile.mkstemp(prefix=f"peers-{name}-", suffix=".log")[1])
    # A peer sees its own modules (session.py, the MLServer runtime), nothing of inferd's path.
    env = {**os.environ, "PYTHONPATH": str(PEERS)} if peer else None
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["taskset", "-c", cpus, *command],
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
        )
    server = Server(name, process, http, grpc, log)
    try:
        _wait_ready(server, timeout_s=240)
        yield server
    finally:
        _stop(process)
        log.unlink(missing_ok=True)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    # Ray and PyTriton start helpers of their own; the tree is listed before the root goes.
    tree = process_tree(process.pid)
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for pid in tree[1:]:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def inferd(model: Path, batching: bool, cpus: str, device: str) -> AbstractContextManager[Server]:
    repository = model.parent.parent.parent
    config = INFERD_CONFIG.format(
        max_batch=MAX_BATCH,
        kind="KIND_GPU" if device == "cuda" else "KIND_CPU",
        batching=f"dynamic_batching {{ max_queue_delay_microseconds: {DELAY_US} }}"
        if batching
        else "",
    )
    (repository / "mlp" / "config.pbtxt").write_text(config)
    http, grpc, metrics = free_port(), free_port(), free_port()
    command = [
        sys.executable, "-m", "inferd", "serve", "--model-repository", str(repository),
        "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
    ]  # fmt: skip
    return started("inferd", command, f"127.0.0.1:{http}", f"127.0.0.1:{grpc}", cpus, peer=False)


def triton(model: Path, batching: bool, cpus: str, device: str) -> AbstractContextManager[Server]:
    http, grpc, metrics = free_port(), free_port(), free_port()
    command = [
        str(peer_python("triton", device)), str(PEERS / "triton_server.py"), str(model),
        "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
        "--max-batch", str(MAX_BATCH if batching else 1), "--delay-us", str(DELAY_US),
        "--device", device,
    ]  # fmt: skip
    return started("triton", command, f"127.0.0.1:{http}", f"127.0.0.1:{grpc}", cpus)


def mlserver(model: Path, batching: bool, cpus: str, device: str) -> AbstractContextManager[Server]:
    folder = Path(tempfile.mkdtemp(prefix="peers-mlserver-"))
    http, grpc, metrics = free_port(), free_port(), free_port()
    # parallel_workers 0: inference in the server's own process, as no worker pool can help
    # on one core (and the other servers run one instance too).
    settings = {
        "host": "127.0.0.1",
        "http_port": http,
        "grpc_port": grpc,
        "metrics_port": metrics,
        "parallel_workers": 0,
        # Its default (debug on) logs every request, which no other server here does.
        "debug": False,
    }
    config = _triton_model_config()
    tensors = {
        kind: [{"name": kind, "datatype": "FP32", "shape": [-1, 256]}]
        for kind in ("input", "output")
    }
    model_settings = {
        "name": "mlp",
        "implementation": "mlserver_runtime.OnnxMLP",
        # The metadata (inputs, outputs) and Triton-form config perf_analyzer reads first.
        "inputs": tensors["input"],
        "outputs": tensors["output"],
        "parameters": {
            "uri": str(model),
            "extra": {"device": device, "triton_config": _as_json(config.config)},
        },
        "max_batch_size": MAX_BATCH if batching else 0,
        "max_batch_time": DELAY_US / 1e6 if batching else 0,
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "model-settings.json").write_text(json.dumps(model_settings))
    command = [
        str(peer_python("mlserver", device)), str(PEERS / "mlserver_server.py"), str(folder),
        config.SerializeToString().hex(),
    ]  # fmt: skip
    return started("mlserver", command, f"127.0.0.1:{http}", f"127.0.0.1:{grpc}", cpus, folder)


def rayserve(model: Path, batching: bool, cpus: str, device: str) -> AbstractContextManager[Server]:
    port = free_port()
    command = [
        str(peer_python("rayserve", device)), str(PEERS / "rayserve_app.py"), str(model),
        "--port", str(port), "--max-batch", str(MAX_BATCH if batching else 1),
        "--delay-us", str(DELAY_US), "--device", device,
    ]  # fmt: skip
    return started("rayserve", command, f"127.0.0.1:{port}", None, cpus)


def _triton_model_config() -> service_pb2.ModelConfigResponse:
    """The example MLP's config in Triton's form, which perf_analyzer reads before it sends
    load: batch-1 rows of 256 in, 256 out. max_batch_size says the leading dimension is the
    batch (as in inferd's and Triton's configs); it is the same with MLServer's batching off."""
    config = model_config_pb2.ModelConfig(name="mlp", max_batch_size=MAX_BATCH)
    for tensors, name in ((config.input, "input"), (config.output, "output")):
        tensors.add(name=name, data_type=model_config_pb2.TYPE_FP32, dims=[256])
    return service_pb2.ModelConfigResponse(config=config)


def _as_json(config: model_config_pb2.ModelConfig) -> dict[str, object]:
    """Triton's JSON form of a model config (field names as in config.pbtxt, numbers as numbers)."""
    return json.loads(
        json_format.MessageToJson(config, preserving_proto_field_name=True),
        object_hook=lambda fields: {
            key: [int(dim) for dim in value] if key == "dims" else value
            for key, value in fields.items()
        },
    )


LAUNCHERS = {"inferd": inferd, "triton": triton, "mlserver": mlserver, "rayserve": rayserve}
# What each server's figures are labelled with, and which distribution gives its version.
TITLES = {
    "inferd": ("inferd (ONNX Runtime backend)", "inferd"),
    "triton": ("Triton via PyTriton (Python function calling ORT)", "nvidia-pytriton"),
    "mlserver": ("MLServer (custom runtime calling ORT)", "mlserver"),
    "rayserve": ("Ray Serve (@serve.batch deployment calling ORT)", "ray"),
}
