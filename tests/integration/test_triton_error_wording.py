"""Error wording that Triton's example clients test for: they match message text, not only
status codes, so inferd words these errors as Triton does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.server import RunningServer, running_server

UNKNOWN_MODEL = "Request for unknown model"
FAILED_TO_LOAD = "failed to load"
# The malformed override Triton's model-control examples send: not a JSON object.
MALFORMED_CONFIG = '"parameters": {"config": {{"max_batch_size": "16"}}}'

# protocol -> (client module, {error kind: the status tritonclient reports})
PROTOCOLS: dict[str, tuple[ModuleType, dict[str, str]]] = {
    "http": (httpclient, {"not_found": "404", "invalid": "400"}),
    "grpc": (
        grpcclient,
        {"not_found": "StatusCode.NOT_FOUND", "invalid": "StatusCode.INVALID_ARGUMENT"},
    ),
}


def _client(server: RunningServer, protocol: str) -> Any:
    module, _ = PROTOCOLS[protocol]
    url = server.http_url if protocol == "http" else server.grpc_url
    return module.InferenceServerClient(url)


def _error(call: Callable[[], object]) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def _simple_inputs(protocol: str) -> list[Any]:
    module, _ = PROTOCOLS[protocol]
    inputs = [module.InferInput(f"INPUT{i}", [1, 16], "INT32") for i in range(2)]
    for item in inputs:
        item.set_data_from_numpy(np.arange(16, dtype=np.int32).reshape(1, 16))
    return inputs


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("model", "version"), [("wrong_model_name", ""), ("simple", "9")])
def test_infer_on_an_unknown_model_or_version(
    server: RunningServer, protocol: str, model: str, version: str
) -> None:
    client = _client(server, protocol)
    inputs = _simple_inputs(protocol)
    error = _error(lambda: client.infer(model, inputs, model_version=version))
    assert error.message().startswith(UNKNOWN_MODEL), error.message()
    assert f"'{model}'" in error.message()
    assert error.status() == PROTOCOLS[protocol][1]["not_found"]
    assert client.infer("simple", inputs).as_numpy("OUTPUT0") is not None


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_failed_loads_say_failed_to_load(explicit_server: RunningServer, protocol: str) -> None:
    client = _client(explicit_server, protocol)
    statuses = PROTOCOLS[protocol][1]
    malformed = _error(lambda: client.load_model("simple", config=MALFORMED_CONFIG))
    assert malformed.message().startswith(f"{FAILED_TO_LOAD} 'simple': "), malformed.message()
    assert malformed.status() == statuses["invalid"]
    assert client.is_model_ready("simple")  # a refused override leaves the model serving

    unknown = _error(lambda: client.load_model("wrong_model_name"))
    assert unknown.message().startswith(f"{FAILED_TO_LOAD} 'wrong_model_name': ")
    assert unknown.status() == statuses["not_found"]


def test_server_name_flag_for_clients_that_check_it(model_repository: Path) -> None:
    with running_server(model_repository, "--server-name", "triton") as server:
        for protocol in PROTOCOLS:
            metadata = _client(server, protocol).get_server_metadata()
            name = metadata["name"] if protocol == "http" else metadata.name
            assert name == "triton", protocol
