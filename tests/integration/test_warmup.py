"""Model warmup (`model_warmup`) through the real server: every sample runs on every instance
before the model reports READY, with zero, random and file data, `count` times; a sample of
batch size 0 is skipped; a failing warmup leaves the model UNAVAILABLE with the reason."""

from __future__ import annotations

import json
import struct
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

import generate_models  # examples/, put on sys.path by tests/conftest.py
from tests.integration.classic_helpers import model_states
from tests.integration.model_files import write
from tests.integration.server import RunningServer, running_server

# Records every execution (instance, request ids, inputs) in the model's folder.
RECORDER = """
import json
import numpy as np

class InferdModel:
    def initialize(self, context):
        self.path = context.model_dir / "seen.jsonl"
        self.instance = context.instance_name

    def execute(self, batch):
        x = np.atleast_2d(batch.inputs["X"])  # one row alone when the model does not batch
        s = batch.inputs["S"]
        seen = {
            "instance": self.instance,
            "ids": [r.id for r in batch.requests],
            "x": x.tolist(),
            "s": [[item.decode() for item in row] for row in s.reshape(len(x), -1)],
        }
        with open(self.path, "a") as log:
            log.write(json.dumps(seen) + "\\n")
        return {"Y": batch.inputs["X"]}
"""

# Streams more responses per request than may wait unread, then records that it finished.
STREAMER = """
import json

class InferdModel:
    def initialize(self, context):
        self.path = context.model_dir / "seen.jsonl"

    def execute(self, batch):
        for request in batch.requests:
            for _ in range(40):
                request.sender.send({"Y": request.inputs["X"]})
            request.sender.close()
        with open(self.path, "a") as log:
            log.write(json.dumps({"ids": [r.id for r in batch.requests]}) + "\\n")
"""

BOOM = """
class InferdModel:
    def execute(self, batch):
        raise RuntimeError("the model is not warm")
"""


def _config(name: str, max_batch_size: int, warmup: str, instances: int = 1) -> str:
    return f"""
name: "{name}"
backend: "python"
max_batch_size: {max_batch_size}
input [ {{ name: "X", data_type: TYPE_FP32, dims: [ 4 ] }},
        {{ name: "S", data_type: TYPE_STRING, dims: [ 2 ] }} ]
output [ {{ name: "Y", data_type: TYPE_FP32, dims: [ 4 ] }} ]
instance_group [ {{ count: {instances}, kind: KIND_CPU }} ]
{warmup}
"""


def _inputs(kind: str, x_file: str = "x.bin", s_file: str = "s.bin") -> str:
    if kind == "file":
        x = f'input_data_file: "{x_file}"'
        s = f'input_data_file: "{s_file}"'
    else:
        x = s = f"{kind}: true"
    return (
        f'inputs {{ key: "X" value: {{ data_type: TYPE_FP32, dims: [ 4 ], {x} }} }}\n'
        f'inputs {{ key: "S" value: {{ data_type: TYPE_STRING, dims: [ 2 ], {s} }} }}'
    )


RECORDER_WARMUP = f"""
model_warmup [
  {{ name: "zeros" batch_size: 3 count: 2 {_inputs("zero_data")} }},
  {{ name: "random" batch_size: 1 {_inputs("random_data")} }},
  {{ name: "file" batch_size: 2 {_inputs("file")} }},
  {{ name: "skipped" batch_size: 0 {_inputs("zero_data")} }}
]
"""

ONNX_WARMUP = """
model_warmup [{
  name: "zeros" batch_size: 2
  inputs { key: "INPUT0" value: { data_type: TYPE_INT32, dims: [ 16 ], zero_data: true } }
  inputs { key: "INPUT1" value: { data_type: TYPE_INT32, dims: [ 16 ], random_data: true } }
}]
"""


def _write_warmup_files(model_dir: Path) -> None:
    (model_dir / "warmup").mkdir()
    (model_dir / "warmup" / "x.bin").write_bytes(np.arange(1, 5, dtype=np.float32).tobytes())
    strings = b"".join(struct.pack("<I", len(s)) + s for s in (b"ab", b"cde"))
    (model_dir / "warmup" / "s.bin").write_bytes(strings)


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("warmup")


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[RunningServer]:
    write(repository, "recorder", RECORDER, _config("recorder", 8, RECORDER_WARMUP, 2))
    _write_warmup_files(repository / "recorder")
    one_by_one = f'model_warmup [{{ name: "pair" batch_size: 2 {_inputs("zero_data")} }}]'
    write(repository, "unbatched", RECORDER, _config("unbatched", 0, one_by_one))
    streamed = f'model_warmup [{{ name: "stream" batch_size: 2 {_inputs("zero_data")} }}]'
    decoupled = "model_transaction_policy { decoupled: true }\n" + streamed
    write(repository, "streamer", STREAMER, _config("streamer", 8, decoupled))
    boom = f'model_warmup [{{ name: "boom" batch_size: 1 {_inputs("zero_data")} }}]'
    write(repository, "boom", BOOM, _config("boom", 8, boom))
    missing = (
        f'model_warmup [{{ name: "gone" batch_size: 1 {_inputs("file", "no.bin", "no.bin")} }}]'
    )
    write(repository, "nofile", RECORDER, _config("nofile", 8, missing))
    short = f'model_warmup [{{ name: "short" batch_size: 1 {_inputs("file", "s.bin")} }}]'
    write(repository, "short", RECORDER, _config("short", 8, short))
    _write_warmup_files(repository / "short")
    generate_models.simple_model(repository / "onnx" / "1" / "model.onnx")
    onnx_config = generate_models.SIMPLE_CONFIG.replace('"simple"', '"onnx"')
    (repository / "onnx" / "config.pbtxt").write_text(onnx_config + ONNX_WARMUP)
    with running_server(repository, "--no-strict-readiness") as running:
        yield running


def _seen(repository: Path, model: str) -> list[dict[str, Any]]:
    path = repository / model / "seen.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_sample_runs_on_every_instance_before_ready(
    server: RunningServer, repository: Path
) -> None:
    assert model_states(server)["recorder"] == ("READY", "")
    # Read before any request was sent: all of it ran during the load.
    seen = _seen(repository, "recorder")
    instances = sorted({entry["instance"] for entry in seen})
    assert len(instances) == 2
    for instance in instances:
        mine = [e for e in seen if e["instance"] == instance]
        samples = [e["ids"][0].removeprefix("warmup-") for e in mine]
        assert samples == ["zeros", "zeros", "random", "file"]  # count 2; batch size 0 skipped
        zeros, _, random, from_file = mine
        assert zeros["x"] == [[0.0] * 4] * 3 and zeros["s"] == [["", ""]] * 3
        assert len(random["x"]) == 1
        assert all(0.0 <= v < 1.0 for v in random["x"][0])
        assert random["s"] == [["", ""]]  # random BYTES are empty elements, as in Triton
        assert from_file["x"] == [[1.0, 2.0, 3.0, 4.0]] * 2
        assert from_file["s"] == [["ab", "cde"]] * 2


def test_a_model_without_batching_runs_each_request_alone(
    server: RunningServer, repository: Path
) -> None:
    seen = _seen(repository, "unbatched")
    assert [len(e["ids"]) for e in seen] == [1, 1]
    assert [e["x"] for e in seen] == [[[0.0] * 4]] * 2


def test_a_decoupled_model_warms_up_reading_every_response(
    server: RunningServer, repository: Path
) -> None:
    assert model_states(server)["streamer"] == ("READY", "")
    assert _seen(repository, "streamer") == [{"ids": ["warmup-stream"] * 2}]


def test_an_onnx_model_warms_up_and_serves(server: RunningServer) -> None:
    assert model_states(server)["onnx"] == ("READY", "")
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        inputs = [grpcclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
        for tensor in inputs:
            tensor.set_data_from_numpy(np.full((1, 16), 3, dtype=np.int32))
        result = client.infer("onnx", inputs)
        assert result.as_numpy("OUTPUT0").tolist() == [[6] * 16]
    finally:
        client.close()


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ("boom", "failed to run warmup sample 'boom': "),
        ("nofile", "warmup sample 'gone': input 'S': cannot read warmup/no.bin"),
        ("short", "warmup sample 'short': input 'X' needs 16 bytes, but warmup/s.bin holds 13"),
    ],
)
def test_a_failing_warmup_makes_the_model_unavailable(
    server: RunningServer, model: str, reason: str
) -> None:
    state, said = model_states(server)[model]
    assert state == "UNAVAILABLE"
    assert reason in said
    if model == "boom":
        assert "the model is not warm" in said
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        assert not client.is_model_ready(model)
    finally:
        client.close()


def test_the_warmup_time_is_logged_and_exported(server: RunningServer) -> None:
    assert "model 'recorder' version 1 ready (python, 2 instance(s) on cpu, warmup " in (
        server.log_text()
    )
    with urllib.request.urlopen(server.metrics_url, timeout=10) as answer:
        metrics = answer.read().decode()
    lines = [
        line
        for line in metrics.splitlines()
        if line.startswith("inferd_model_warmup_duration_seconds{")
    ]
    models = {line.split('model="')[1].split('"')[0] for line in lines}
    assert models == {"recorder", "unbatched", "streamer", "onnx"}
    assert all(float(line.rsplit(" ", 1)[1]) > 0 for line in lines)


def test_each_iteration_and_a_failure_are_logged_in_tritons_words(server: RunningServer) -> None:
    # qa/L0_warmup greps the server log for these lines (and the error's trailing ';').
    log = server.log_text()
    for instance in ("recorder_0_0", "recorder_0_1"):
        for iteration in (1, 2):
            assert (
                f"model 'recorder' instance {instance} is running warmup sample 'zeros' "
                f"for iteration {iteration}"
            ) in log
        assert "is running warmup sample 'zeros' for iteration 3" not in log
    assert "model 'boom' instance boom_0_0 failed to run warmup sample 'boom'" in log
    assert "failed to run warmup sample 'boom': " in log
    assert "the model is not warm;" in log
