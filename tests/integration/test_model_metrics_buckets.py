"""A model's own histogram buckets (`model_metrics` in its config, Triton's field) on a running
server's /metrics: the families it names get its buckets, the others and other models keep
the defaults, and a family without buckets to set or bounds out of order leave the defaults."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.model_files import simple_copy
from tests.integration.server import RunningServer, running_server
from tests.integration.test_latency_summaries import infer, samples

OWN = """
model_metrics {
  metric_control [
    { metric_identifier { family: "nv_inference_first_response_histogram_ms" }
      histogram_options { buckets: [ 1, 2, 4, 8 ] } },
    { metric_identifier { family: "inferd_request_duration_seconds" }
      histogram_options { buckets: [ 0.001, 0.01, 0.1 ] } },
    { metric_identifier { family: "inferd_queue_duration_seconds" }
      histogram_options { buckets: [ 0.1, 0.01 ] } },
    { metric_identifier { family: "nv_inference_request_duration_us" }
      histogram_options { buckets: [ 1 ] } }
  ]
}
"""


@pytest.fixture(scope="module")
def server(
    model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("buckets")
    (root / "simple").symlink_to(model_repository / "simple", target_is_directory=True)
    simple_copy(model_repository, root, "own", OWN)
    with running_server(root) as running:
        yield running


def bounds(server: RunningServer, model: str, family: str) -> list[str]:
    return [le for name, le in samples(server, model) if name == f"{family}_bucket"]


def test_a_models_own_buckets(server: RunningServer) -> None:
    infer(server, 2, model="own")
    infer(server, 1)
    first = "nv_inference_first_response_histogram_ms"
    assert bounds(server, "own", first) == ["1", "2", "4", "8", "+Inf"]
    assert bounds(server, "simple", first) == ["100", "500", "2000", "5000", "+Inf"]
    own = bounds(server, "own", "inferd_request_duration_seconds")
    assert own == ["0.001", "0.01", "0.1", "+Inf"]
    assert samples(server, "own")["inferd_request_duration_seconds_bucket", "+Inf"] == 2
    # Bounds out of order: the defaults, as for the other families and models.
    default = bounds(server, "simple", "inferd_request_duration_seconds")
    assert len(default) == 15
    assert bounds(server, "own", "inferd_queue_duration_seconds") == default
    assert bounds(server, "own", "inferd_compute_duration_seconds") == default
