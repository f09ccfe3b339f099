"""The CUDA shared-memory extension over HTTP and gRPC, driven by tritonclient's own utilities.

As Triton's simple_{http,grpc}_cudashm_client examples: this process allocates device memory
with `tritonclient.utils.cuda_shared_memory`, hands the server its CUDA IPC handle, and names
the regions in requests to the `simple` model. Needs cuda-python and a CUDA device; skipped
without them (the "not supported" answer is tested in test_shared_memory.py).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

cudart = pytest.importorskip("cuda.bindings.runtime", reason="needs cuda-python ('inferd[cuda]')")

from inferd.frontends import cuda_memory  # noqa: E402

if cuda_memory.load() is None:
    pytest.skip("no CUDA device", allow_module_level=True)

import tritonclient.utils.cuda_shared_memory as cudashm  # noqa: E402

from tests.integration.http_helpers import get_json, post_json  # noqa: E402
from tests.integration.server import RunningServer  # noqa: E402
from tests.integration.shm_helpers import (  # noqa: E402
    ALREADY_EXISTS,
    INVALID,
    NOT_FOUND,
    TENSOR_BYTES,
    A,
    B,
    Client,
    assert_still_serving,
    connect,
    expect_error,
    is_http,
    simple_inputs,
    simple_outputs,
)

DEVICE = 0

Region = Any  # tritonclient.utils.cuda_shared_memory.CudaSharedMemoryRegion


@pytest.fixture(params=["http", "grpc"])
def client(request: pytest.FixtureRequest, shm_server: RunningServer) -> Iterator[Client]:
    connection = connect(shm_server, request.param)
    yield connection
    # Leave the server as we found it, and unmap before the memory is freed below.
    connection.unregister_cuda_shared_memory()
    connection.unregister_system_shared_memory()
    connection.close()


@pytest.fixture
def make_region() -> Iterator[Callable[[int], tuple[str, Region]]]:
    """Allocate device memory: (region name, handle); freed after the test."""
    made: list[Region] = []

    def make(byte_size: int) -> tuple[str, Region]:
        name = f"cuda_{uuid.uuid4().hex[:12]}"
        handle = cudashm.create_shared_memory_region(name, byte_size, DEVICE)
        made.append(handle)
        return name, handle

    yield make
    for handle in made:
        cudashm.destroy_shared_memory_region(handle)


def _register(client: Client, name: str, handle: Region, byte_size: int) -> None:
    client.register_cuda_shared_memory(name, cudashm.get_raw_handle(handle), DEVICE, byte_size)


def _status(client: Client, name: str = "") -> dict[str, tuple[int, int]]:
    """{region name: (device_id, byte_size)} as the server reports it."""
    status = client.get_cuda_shared_memory_status(name)
    if is_http(client):
        return {r["name"]: (r["device_id"], r["byte_size"]) for r in status}
    return {n: (r.device_id, r.byte_size) for n, r in status.regions.items()}


def test_extension_is_listed(client: Client) -> None:
    metadata = client.get_server_metadata()
    extensions = metadata["extensions"] if is_http(client) else list(metadata.extensions)
    assert {"cuda_shared_memory", "system_shared_memory"} <= set(extensions)


def test_simple_model_with_inputs_and_outputs_in_cuda_shared_memory(
    client: Client, make_region: Callable[[int], tuple[str, Region]]
) -> None:
    # Both inputs in one region (the second at an offset), each output in its own region.
    in_name, in_handle = make_region(2 * TENSOR_BYTES)
    out0_name, out0_handle = make_region(TENSOR_BYTES)
    out1_name, out1_handle = make_region(TENSOR_BYTES)
    cudashm.set_shared_memory_region(in_handle, [A, B])
    _register(client, in_name, in_handle, 2 * TENSOR_BYTES)
    _register(client, out0_name, out0_handle, TENSOR_BYTES)
    _register(client, out1_name, out1_handle, TENSOR_BYTES)

    inputs, outputs = simple_inputs(client), simple_outputs(client)
    inputs[0].set_shared_memory(in_name, TENSOR_BYTES)
    inputs[1].set_shared_memory(in_name, TENSOR_BYTES, offset=TENSOR_BYTES)
    outputs[0].set_shared_memory(out0_name, TENSOR_BYTES)
    outputs[1].set_shared_memory(out1_name, TENSOR_BYTES)
    result = client.infer("simple", inputs, outputs=outputs)

    for handle, name, expected in (
        (out0_handle, "OUTPUT0", A + B),
        (out1_handle, "OUTPUT1", A - B),
    ):
        output = result.get_output(name)
        shape = output["shape"] if is_http(client) else list(output.shape)
        contents = cudashm.get_contents_as_numpy(handle, np.int32, shape)
        np.testing.assert_array_equal(contents, expected)
    if is_http(client):
        assert "data" not in result.get_output("OUTPUT1")
        assert result.get_output("OUTPUT1")["parameters"] == {
            "shared_memory_region": out1_name,
            "shared_memory_byte_size": TENSOR_BYTES,
        }
    else:
        assert result.get_response().raw_output_contents == [b"", b""]


def test_mixed_cuda_and_inline_tensors(
    client: Client, make_region: Callable[[int], tuple[str, Region]]
) -> None:
    name, handle = make_region(TENSOR_BYTES)
    cudashm.set_shared_memory_region(handle, [B])
    _register(client, name, handle, TENSOR_BYTES)
    inputs, outputs = simple_inputs(client), simple_outputs(client)
    inputs[0].set_data_from_numpy(A)
    inputs[1].set_shared_memory(name, TENSOR_BYTES)
    outputs[1].set_shared_memory(name, TENSOR_BYTES)  # overwrites the input, after reading it
    result = client.infer("simple", inputs, outputs=outputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), A + B)
    np.testing.assert_array_equal(cudashm.get_contents_as_numpy(handle, np.int32, [1, 16]), A - B)


def test_status_and_unregister(
    client: Client, make_region: Callable[[int], tuple[str, Region]]
) -> None:
    first, first_handle = make_region(128)
    second, second_handle = make_region(256)
    _register(client, first, first_handle, 64)
    _register(client, second, second_handle, 256)
    assert _status(client) == {first: (DEVICE, 64), second: (DEVICE, 256)}
    assert _status(client, first) == {first: (DEVICE, 64)}
    system = client.get_system_shared_memory_status()
    assert (system if is_http(client) else list(system.regions)) == []  # kinds stay apart

    client.unregister_cuda_shared_memory(first)
    assert _status(client) == {second: (DEVICE, 256)}
    expect_error(lambda: client.get_cuda_shared_memory_status(first), NOT_FOUND, first)
    client.unregister_cuda_shared_memory(first)  # unknown names are ignored, as Triton does
    client.unregister_system_shared_memory(second)  # a system unregister leaves CUDA alone
    assert _status(client) == {second: (DEVICE, 256)}
    client.unregister_cuda_shared_memory()
    assert _status(client) == {}


def test_bad_registrations(
    client: Client, make_region: Callable[[int], tuple[str, Region]]
) -> None:
    name, handle = make_region(128)
    raw = cudashm.get_raw_handle(handle)
    _register(client, name, handle, 128)
    register = client.register_cuda_shared_memory
    count = cuda_memory.load().device_count  # type: ignore[union-attr]
    expect_error(lambda: register(name, raw, DEVICE, 64), ALREADY_EXISTS, "already registered")
    # One namespace for both kinds, as in Triton.
    system = client.register_system_shared_memory
    expect_error(lambda: system(name, "/inferd_any", 64), ALREADY_EXISTS, "already registered")
    short = base64.b64encode(b"\1" * 10)
    expect_error(lambda: register("other", short, DEVICE, 64), INVALID, "64 bytes, not 10")
    zeros = base64.b64encode(b"\0" * 64)
    expect_error(lambda: register("other", zeros, DEVICE, 64), INVALID, "unable to open")
    expect_error(lambda: register("other", raw, count, 64), INVALID, "does not exist")
    expect_error(lambda: register("other", raw, DEVICE, 1 << 30), INVALID, "exceeds the")
    assert _status(client) == {name: (DEVICE, 128)}
    assert_still_serving(client)


def test_bad_tensor_references(
    client: Client, make_region: Callable[[int], tuple[str, Region]]
) -> None:
    name, handle = make_region(2 * TENSOR_BYTES)
    cudashm.set_shared_memory_region(handle, [A, B])
    _register(client, name, handle, 2 * TENSOR_BYTES)

    def infer(region: str = name, input_offset: int = 0, output_size: int | None = None) -> None:
        inputs, outputs = simple_inputs(client), simple_outputs(client)
        inputs[0].set_shared_memory(region, TENSOR_BYTES, offset=input_offset)
        inputs[1].set_data_from_numpy(B)
        if output_size is not None:
            outputs[0].set_shared_memory(name, output_size)
        client.infer("simple", inputs, outputs=outputs)

    expect_error(lambda: infer(region="nope"), NOT_FOUND, "'nope'")
    expect_error(lambda: infer(input_offset=TENSOR_BYTES + 8), INVALID, "runs past the end")
    expect_error(lambda: infer(output_size=32), INVALID, "should be at least 64 bytes")
    assert_still_serving(client)


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"device_id": 0, "byte_size": 64}, "raw_handle"),
        ({"raw_handle": "AAAA", "device_id": 0, "byte_size": 64}, "'b64'"),
        ({"raw_handle": {"b64": "not base64!"}, "device_id": 0, "byte_size": 64}, "base64"),
        ({"raw_handle": {"b64": ""}, "device_id": -1, "byte_size": 64}, "non-negative"),
        ({"raw_handle": {"b64": ""}, "device_id": 0, "byte_size": "64"}, "non-negative"),
    ],
)
def test_malformed_http_registrations(
    shm_server: RunningServer, body: dict[str, Any], text: str
) -> None:
    status, document = post_json(
        shm_server.http_port, "/v2/cudasharedmemory/region/r/register", body
    )
    assert (status, text in document["error"]) == (400, True), document
    assert get_json(shm_server.http_port, "/v2/cudasharedmemory/status") == (200, [])
