"""What the system and CUDA shared-memory tests share: the `simple` model's tensors, and
checks that read the same over tritonclient.http and tritonclient.grpc."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.server import RunningServer

A = np.arange(16, dtype=np.int32).reshape(1, 16)
B = np.full((1, 16), 3, dtype=np.int32)
TENSOR_BYTES = A.nbytes  # 64

Client = Any  # tritonclient.http or tritonclient.grpc InferenceServerClient

# (HTTP status, gRPC status) of each kind of refusal
NOT_FOUND = ("404", "NOT_FOUND")
INVALID = ("400", "INVALID_ARGUMENT")
ALREADY_EXISTS = ("409", "ALREADY_EXISTS")


def connect(server: RunningServer, protocol: str) -> Client:
    """A tritonclient of `protocol` ("http" or "grpc") for `server`."""
    if protocol == "http":
        return httpclient.InferenceServerClient(server.http_url)
    return grpcclient.InferenceServerClient(server.grpc_url)


def is_http(client: Client) -> bool:
    return isinstance(client, httpclient.InferenceServerClient)


def client_module(client: Client) -> ModuleType:
    return httpclient if is_http(client) else grpcclient


def simple_inputs(client: Client) -> list[Any]:
    module = client_module(client)
    return [module.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]


def simple_outputs(client: Client) -> list[Any]:
    module = client_module(client)
    return [module.InferRequestedOutput(n) for n in ("OUTPUT0", "OUTPUT1")]


def expect_error(call: Callable[[], Any], status: tuple[str, str], text: str) -> None:
    """`call` fails with `status` (HTTP code, gRPC code: whichever the client speaks)."""
    with pytest.raises(InferenceServerException) as caught:
        call()
    http, grpc = status
    assert caught.value.status() in (http, f"StatusCode.{grpc}"), caught.value
    assert text in caught.value.message(), caught.value.message()


def assert_still_serving(client: Client) -> None:
    inputs = simple_inputs(client)
    inputs[0].set_data_from_numpy(A)
    inputs[1].set_data_from_numpy(B)
    result = client.infer("simple", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), A + B)
