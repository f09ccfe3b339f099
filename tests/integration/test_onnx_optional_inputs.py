"""ONNX inputs with a default value (initializers listed as graph inputs) through the real
server and tritonclient: the model loads, a request may leave them out or override them, and
`optional: true` on an input the graph cannot do without is refused at load."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import generate_models  # examples/, put on sys.path by tests/conftest.py
from tests.integration.classic_helpers import model_states
from tests.integration.server import RunningServer, running_server

CONFIG = """name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 0
input [
  {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ -1, 4 ] {optional} }},
  {{ name: "scale" data_type: TYPE_FP32 dims: [ 1 ] }}
]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1, 4 ] }} ]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("optional")
    for name, optional in (("affine", ""), ("wrongly_optional", "optional: true")):
        model = repository / name / "1" / "model.onnx"
        generate_models.affine_model(model, 2.0, 1.0, overridable=True)
        (repository / name / "config.pbtxt").write_text(CONFIG.format(name=name, optional=optional))
    with running_server(repository, "--no-strict-readiness") as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpclient.InferenceServerClient]:
    opened = httpclient.InferenceServerClient(server.http_url)
    yield opened
    opened.close()


def _input(name: str, array: np.ndarray) -> httpclient.InferInput:
    tensor = httpclient.InferInput(name, list(array.shape), "FP32")
    tensor.set_data_from_numpy(array)
    return tensor


def test_an_input_with_a_default_may_be_left_out_or_given(
    client: httpclient.InferenceServerClient,
) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    left_out = client.infer("affine", [_input("INPUT0", x)])
    np.testing.assert_array_equal(left_out.as_numpy("OUTPUT0"), x * 2 + 1)
    scale = np.array([5], dtype=np.float32)
    given = client.infer("affine", [_input("INPUT0", x), _input("scale", scale)])
    np.testing.assert_array_equal(given.as_numpy("OUTPUT0"), x * 5 + 1)
    inputs = client.get_model_config("affine")["input"]
    assert {t["name"]: t.get("optional", False) for t in inputs} == {
        "INPUT0": False,
        "scale": True,
    }


def test_a_required_input_is_still_required(client: httpclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match="missing required input") as caught:
        client.infer("affine", [_input("scale", np.array([5], dtype=np.float32))])
    assert caught.value.status() == "400"


def test_optional_on_an_input_without_a_default_is_refused_at_load(
    server: RunningServer,
) -> None:
    state, reason = model_states(server)["wrongly_optional"]
    assert state == "UNAVAILABLE"
    assert "inputs ['INPUT0'] are optional in the config" in reason
