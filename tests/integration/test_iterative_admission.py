"""Admission to an iterative model's running batch over a real server, with tritonclient:
with the one slot busy, a request of higher `priority` is admitted before an earlier one, a
full priority level answers UNAVAILABLE, a request past its queue `timeout` fails, and a model
with bad `inferd.admission.` parameters does not load."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.integration.model_files import write
from tests.integration.server import RunningServer, running_server
from tests.integration.test_cancellation import SLOW, eventually, metric

# SLOW logs "start <request id>" for each request it runs, and holds the one slot while IN is
# non-zero until the file `<marker>.release` exists.
CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "IN", data_type: TYPE_INT32, dims: [ 1 ] }} ]
output [ {{ name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] }} ]
sequence_batching {{ iterative_sequence: true }}
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
parameters [
  {{ key: "marker", value: {{ string_value: "{marker}" }} }},
  {{ key: "inferd.admission.priority_levels", value: {{ string_value: "2" }} }},
  {{ key: "inferd.admission.default_priority_level", value: {{ string_value: "2" }} }},
  {{ key: "inferd.admission.max_queue_size", value: {{ string_value: "2" }} }},
  {{ key: "inferd.admission.allow_timeout_override", value: {{ string_value: "{override}" }} }}
]
"""

MODEL = "admitted"


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("admission")
    marker = root / "steps"
    write(root, MODEL, SLOW, CONFIG.format(name=MODEL, marker=marker, override="true"))
    return root


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[RunningServer]:
    with running_server(repository) as running:
        yield running


class Client:
    """Requests to the model, each answered into `answers` by request id."""

    def __init__(self, server: RunningServer, repository: Path) -> None:
        self.grpc = grpcclient.InferenceServerClient(server.grpc_url)
        self.server = server
        self.marker = repository / "steps"
        self.release = repository / "steps.release"
        self.answers: dict[str, object] = {}

    def send(self, request_id: str, hold: bool = False, **options: int) -> None:
        tensor = grpcclient.InferInput("IN", [1], "INT32")
        tensor.set_data_from_numpy(np.array([int(hold)], np.int32))
        self.grpc.async_infer(
            MODEL,
            [tensor],
            lambda result, error: self.answers.__setitem__(request_id, error or result),
            request_id=request_id,
            **options,
        )

    def started(self) -> list[str]:
        lines = self.marker.read_text().splitlines() if self.marker.exists() else []
        return [line.removeprefix("start ") for line in lines]

    def hold_the_slot(self) -> None:
        self.release.unlink(missing_ok=True)
        self.send("hold", hold=True)
        eventually(lambda: "hold" in self.started())

    def waiting(self) -> int:
        return int(metric(self.server, "nv_inference_pending_request_count", MODEL))

    def finish(self, count: int) -> None:
        self.release.touch()
        eventually(lambda: len(self.answers) == count)
        self.grpc.close()


@pytest.fixture
def client(server: RunningServer, repository: Path) -> Iterator[Client]:
    (repository / "steps").unlink(missing_ok=True)
    opened = Client(server, repository)
    yield opened
    opened.release.touch()


def error_of(answer: object) -> InferenceServerException:
    assert isinstance(answer, InferenceServerException), answer
    return answer


def test_a_higher_priority_request_takes_the_slot_first(client: Client) -> None:
    client.hold_the_slot()
    client.send("low")  # the default level, 2
    eventually(lambda: client.waiting() == 1)
    client.send("high", priority=1)
    eventually(lambda: client.waiting() == 2)
    client.finish(3)
    assert client.started() == ["hold", "high", "low"]
    assert not any(isinstance(a, InferenceServerException) for a in client.answers.values())


def test_a_full_priority_level_answers_unavailable(client: Client) -> None:
    client.hold_the_slot()
    client.send("first")
    # Two calls sent back to back may reach the server in either order: one at a time.
    eventually(lambda: client.waiting() == 1)
    client.send("second")
    eventually(lambda: client.waiting() == 2)
    client.send("refused")  # max_queue_size 2 at level 2
    client.send("other level", priority=1)  # its own level has room
    eventually(lambda: "refused" in client.answers)
    error = error_of(client.answers["refused"])
    assert error.status() == "StatusCode.UNAVAILABLE"
    assert f"the queue of model '{MODEL}' is full (2 requests)" in error.message()
    client.finish(5)
    assert client.started() == ["hold", "other level", "first", "second"]


def test_a_request_past_its_queue_timeout_fails(client: Client) -> None:
    client.hold_the_slot()
    client.send("impatient", timeout=50_000)  # microseconds
    eventually(lambda: "impatient" in client.answers)  # while the slot is still held
    error = error_of(client.answers["impatient"])
    assert error.status() == "StatusCode.UNAVAILABLE"
    assert "timed out in the queue" in error.message()
    assert client.waiting() == 0
    client.finish(2)
    assert "impatient" not in client.started()


def test_bad_admission_parameters_do_not_load(tmp_path: Path) -> None:
    config = CONFIG.format(name="bad", marker=tmp_path / "steps", override="sometimes")
    write(tmp_path, "bad", SLOW, config)
    with running_server(tmp_path, "--model-control-mode", "explicit") as running:
        grpc = grpcclient.InferenceServerClient(running.grpc_url)
        with pytest.raises(InferenceServerException) as refused:
            grpc.load_model("bad")
        message = refused.value.message()
        assert "inferd.admission.allow_timeout_override" in message
        assert "must be 'true' or 'false', got 'sometimes'" in message
        grpc.close()
