"""A cancelled request of a sequence (the sequence batcher, not iterative) that waits behind
its sequence's running step leaves its queue and never runs; it counts as a cancelled failure,
and the sequence goes on with its next request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.integration.model_files import write
from tests.integration.server import RunningServer, running_server
from tests.integration.test_cancellation import SLOW, eventually, fail_count, metric

# SLOW logs "start <request id>" for each request it runs, and holds the instance while IN is
# non-zero until the file `<marker>.release` exists.
CONFIG = """
name: "stateful"
backend: "python"
max_batch_size: 0
input [ {{ name: "IN", data_type: TYPE_INT32, dims: [ 1 ] }} ]
output [ {{ name: "OUT", data_type: TYPE_INT32, dims: [ 1 ] }} ]
sequence_batching {{ }}
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
parameters [ {{ key: "marker", value: {{ string_value: "{marker}" }} }} ]
"""


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sequence_cancellation")
    write(root, "stateful", SLOW, CONFIG.format(marker=root / "steps"))
    return root


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[RunningServer]:
    with running_server(repository) as running:
        yield running


def value(number: int) -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("IN", [1], "INT32")
    tensor.set_data_from_numpy(np.array([number], np.int32))
    return [tensor]


def test_a_cancelled_queued_step_of_a_sequence_never_runs(
    server: RunningServer, repository: Path
) -> None:
    marker = repository / "steps"

    def started() -> list[str]:
        lines = marker.read_text().splitlines() if marker.exists() else []
        return [line.removeprefix("start ") for line in lines]

    cancelled = metric(server, "inferd_inference_request_cancelled", "stateful")
    failed = fail_count(server, "stateful")
    client = grpcclient.InferenceServerClient(server.grpc_url)
    answers: list[object] = []
    client.async_infer(
        "stateful",
        value(1),
        lambda result, error: answers.append(error or result),
        request_id="first",
        sequence_id=7,
        sequence_start=True,
    )
    eventually(lambda: "first" in started())
    # The sequence's next request waits behind its running one until its deadline passes.
    with pytest.raises(InferenceServerException, match="Deadline"):
        client.infer("stateful", value(0), request_id="gone", sequence_id=7, client_timeout=1)
    eventually(lambda: metric(server, "inferd_inference_request_cancelled", "stateful") > cancelled)
    assert metric(server, "nv_inference_pending_request_count", "stateful") == 0
    assert fail_count(server, "stateful") == failed + 1

    (repository / "steps.release").touch()
    eventually(lambda: len(answers) == 1)
    assert not isinstance(answers[0], InferenceServerException)
    result = client.infer("stateful", value(0), request_id="last", sequence_id=7, sequence_end=True)
    assert result.as_numpy("OUT").tolist() == [0]
    assert started() == ["first", "last"]  # `gone` never ran
    assert metric(server, "inferd_inference_request_cancelled", "stateful") == cancelled + 1
    client.close()
