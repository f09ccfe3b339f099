"""The field registry at load, through the real server: a field without effect loads with a
warning naming it, a refused one leaves the model UNAVAILABLE with the reason."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import generate_models  # examples/, put on sys.path by tests/conftest.py
from tests.integration.classic_helpers import model_states
from tests.integration.server import RunningServer, running_server

EXTRA = {
    "warmed": 'metric_tags { key: "team" value: "search" }\n',
    "ops": 'model_operations { op_library_filename: ["ops.so"] }\n',
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("fields")
    for name, extra in EXTRA.items():
        generate_models.simple_model(repository / name / "1" / "model.onnx")
        config = generate_models.SIMPLE_CONFIG.replace('"simple"', f'"{name}"')
        (repository / name / "config.pbtxt").write_text(config + extra)
    with running_server(repository, "--no-strict-readiness") as running:
        yield running


def test_a_field_without_effect_loads_with_a_warning_naming_it(server: RunningServer) -> None:
    assert model_states(server)["warmed"][0] == "READY"
    assert "model 'warmed': 'metric_tags' has no effect in inferd" in server.log_text()


def test_a_refused_field_makes_the_model_unavailable_with_the_reason(
    server: RunningServer,
) -> None:
    state, reason = model_states(server)["ops"]
    assert state == "UNAVAILABLE"
    assert "'model_operations' is not supported" in reason
