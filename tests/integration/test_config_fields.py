"""The field registry at load, through the real server: a field without effect loads with a
warning naming it, a refused one leaves the model UNAVAILABLE with the reason; and a request
for the classification extension, not implemented yet, is refused rather than answered raw."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import generate_models  # examples/, put on sys.path by tests/conftest.py
from tests.integration.classic_helpers import model_states
from tests.integration.server import RunningServer, running_server

EXTRA = {
    "warmed": 'metric_tags { key: "team" value: "search" }\n',
    "passive": "instance_group [ { count: 1, kind: KIND_CPU, passive: true } ]\n",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("fields")
    for name, extra in EXTRA.items():
        generate_models.simple_model(repository / name / "1" / "model.onnx")
        config = generate_models.SIMPLE_CONFIG.replace('"simple"', f'"{name}"')
        if "instance_group" in extra:
            config = config.replace("instance_group [ { count: 1, kind: KIND_CPU } ]\n", "")
        (repository / name / "config.pbtxt").write_text(config + extra)
    with running_server(repository, "--no-strict-readiness") as running:
        yield running


def test_a_field_without_effect_loads_with_a_warning_naming_it(server: RunningServer) -> None:
    assert model_states(server)["warmed"][0] == "READY"
    assert "model 'warmed': 'metric_tags' has no effect in inferd" in server.log_text()


def test_a_refused_field_makes_the_model_unavailable_with_the_reason(
    server: RunningServer,
) -> None:
    state, reason = model_states(server)["passive"]
    assert state == "UNAVAILABLE"
    assert "'instance_group.passive' is not supported" in reason


@pytest.mark.parametrize("module", [httpclient, grpcclient], ids=["http", "grpc"])
def test_a_class_count_request_is_refused_out_loud(server: RunningServer, module: Any) -> None:
    url = server.http_url if module is httpclient else server.grpc_url
    client = module.InferenceServerClient(url)
    ones = np.ones((1, 16), dtype=np.int32)
    inputs = [module.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(ones)
    wanted = [module.InferRequestedOutput("OUTPUT0", class_count=2)]
    try:
        with pytest.raises(InferenceServerException, match="class_count") as caught:
            client.infer("warmed", inputs, outputs=wanted)
        assert caught.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    finally:
        client.close()
