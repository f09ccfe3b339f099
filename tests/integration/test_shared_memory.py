"""The system shared-memory extension over HTTP and gRPC, driven by tritonclient's own utilities.

One server with `--enable-shared-memory` serves the module; each test creates its own POSIX
shared-memory objects (unique keys) and leaves no region registered behind it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm

from inferd.frontends import cuda_memory
from tests.integration.grpc_helpers import simple_request, stub
from tests.integration.http_helpers import post_json, request
from tests.integration.server import RunningServer
from tests.integration.shm_helpers import (
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
    simple_inputs,
    simple_outputs,
)

Region = Any  # tritonclient.utils.shared_memory.SharedMemoryRegion


@pytest.fixture(params=["http", "grpc"])
def client(request: pytest.FixtureRequest, shm_server: RunningServer) -> Iterator[Client]:
    connection = connect(shm_server, request.param)
    yield connection
    connection.unregister_system_shared_memory()  # leave the server as we found it
    connection.close()


@pytest.fixture
def make_region() -> Iterator[Callable[[int], tuple[str, str, Region]]]:
    """Create shared-memory objects: (region name, key, handle); destroyed after the test."""
    made: list[Region] = []

    def make(byte_size: int) -> tuple[str, str, Region]:
        suffix = uuid.uuid4().hex[:12]
        name, key = f"region_{suffix}", f"/inferd_test_{suffix}"
        handle = shm.create_shared_memory_region(name, key, byte_size)
        made.append(handle)
        return name, key, handle

    yield make
    for handle in made:
        shm.destroy_shared_memory_region(handle)


def _status_names(client: Client) -> set[str]:
    status = client.get_system_shared_memory_status()
    if isinstance(client, httpclient.InferenceServerClient):
        return {region["name"] for region in status}
    return set(status.regions)


UNSUPPORTED = ("501", "UNIMPLEMENTED")


def test_simple_model_with_inputs_and_outputs_in_shared_memory(
    client: Client, make_region: Callable[[int], tuple[str, str, Region]]
) -> None:
    # As Triton's simple_*_shm_client examples: both inputs in one region, outputs in another.
    in_name, in_key, in_handle = make_region(2 * TENSOR_BYTES)
    out_name, out_key, out_handle = make_region(2 * TENSOR_BYTES)
    shm.set_shared_memory_region(in_handle, [A, B])
    client.register_system_shared_memory(in_name, in_key, 2 * TENSOR_BYTES)
    client.register_system_shared_memory(out_name, out_key, 2 * TENSOR_BYTES)

    inputs, outputs = simple_inputs(client), simple_outputs(client)
    inputs[0].set_shared_memory(in_name, TENSOR_BYTES)
    inputs[1].set_shared_memory(in_name, TENSOR_BYTES, offset=TENSOR_BYTES)
    outputs[0].set_shared_memory(out_name, TENSOR_BYTES)
    outputs[1].set_shared_memory(out_name, TENSOR_BYTES, offset=TENSOR_BYTES)
    result = client.infer("simple", inputs, outputs=outputs)

    for index, expected in ((0, A + B), (1, A - B)):
        output = result.get_output(f"OUTPUT{index}")
        datatype = output["datatype"] if isinstance(output, dict) else output.datatype
        shape = output["shape"] if isinstance(output, dict) else list(output.shape)
        assert (datatype, shape) == ("INT32", [1, 16])
        contents = shm.get_contents_as_numpy(
            out_handle, np.int32, shape, offset=index * TENSOR_BYTES
        )
        np.testing.assert_array_equal(contents, expected)
    if isinstance(client, httpclient.InferenceServerClient):
        # Neither data nor parameters, as Triton: Triton's C++ client (perf_analyzer
        # --shared-memory system) fails on an output whose parameters lack binary_data_size.
        assert set(result.get_output("OUTPUT1")) == {"name", "datatype", "shape"}
    else:
        assert result.get_response().raw_output_contents == [b"", b""]


def test_mixed_shared_memory_and_inline_tensors(
    client: Client, make_region: Callable[[int], tuple[str, str, Region]]
) -> None:
    name, key, handle = make_region(2 * TENSOR_BYTES)
    shm.set_shared_memory_region(handle, [B], offset=TENSOR_BYTES)
    client.register_system_shared_memory(name, key, TENSOR_BYTES, offset=TENSOR_BYTES)

    inputs, outputs = simple_inputs(client), simple_outputs(client)
    inputs[0].set_data_from_numpy(A)
    inputs[1].set_shared_memory(name, TENSOR_BYTES)  # region offset 64 = object offset 64
    outputs[1].set_shared_memory(name, TENSOR_BYTES)
    result = client.infer("simple", inputs, outputs=outputs)

    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), A + B)
    contents = shm.get_contents_as_numpy(handle, np.int32, [1, 16], offset=TENSOR_BYTES)
    np.testing.assert_array_equal(contents, A - B)


def test_status_and_unregister(
    client: Client, make_region: Callable[[int], tuple[str, str, Region]]
) -> None:
    first, first_key, _ = make_region(128)
    second, second_key, _ = make_region(128)
    client.register_system_shared_memory(first, first_key, 64, offset=32)
    client.register_system_shared_memory(second, second_key, 128)
    assert _status_names(client) == {first, second}

    one = client.get_system_shared_memory_status(first)
    if isinstance(client, httpclient.InferenceServerClient):
        assert one == [{"name": first, "key": first_key, "offset": 32, "byte_size": 64}]
    else:
        region = one.regions[first]
        assert (region.key, region.offset, region.byte_size) == (first_key, 32, 64)

    client.unregister_system_shared_memory(first)
    assert _status_names(client) == {second}
    expect_error(lambda: client.get_system_shared_memory_status(first), NOT_FOUND, first)
    client.unregister_system_shared_memory(first)  # unknown names are ignored, as Triton does
    client.unregister_system_shared_memory()
    assert _status_names(client) == set()


def test_bad_registrations(
    client: Client, make_region: Callable[[int], tuple[str, str, Region]]
) -> None:
    name, key, _ = make_region(128)
    client.register_system_shared_memory(name, key, 128)
    register = client.register_system_shared_memory
    expect_error(lambda: register(name, key, 64), ALREADY_EXISTS, "already registered")
    expect_error(lambda: register("other", "/inferd_no_object", 64), NOT_FOUND, "does not exist")
    expect_error(lambda: register("other", key, 128, offset=8), INVALID, "exceeds the 128 bytes")
    expect_error(lambda: register("other", "/../etc/passwd", 8), INVALID, "not a valid")
    assert _status_names(client) == {name}
    assert_still_serving(client)


def test_bad_tensor_references(
    client: Client, make_region: Callable[[int], tuple[str, str, Region]]
) -> None:
    name, key, handle = make_region(2 * TENSOR_BYTES)
    shm.set_shared_memory_region(handle, [A, B])
    client.register_system_shared_memory(name, key, 2 * TENSOR_BYTES)

    def infer(
        region: str = name,
        input_size: int = TENSOR_BYTES,
        input_offset: int = 0,
        output_size: int | None = None,
    ) -> None:
        inputs, outputs = simple_inputs(client), simple_outputs(client)
        inputs[0].set_shared_memory(region, input_size, offset=input_offset)
        inputs[1].set_data_from_numpy(B)
        if output_size is not None:
            outputs[0].set_shared_memory(name, output_size)
        client.infer("simple", inputs, outputs=outputs)

    expect_error(lambda: infer(region="nope"), NOT_FOUND, "'nope'")
    expect_error(lambda: infer(input_size=60), INVALID, "needs 64")
    expect_error(lambda: infer(input_offset=TENSOR_BYTES + 8), INVALID, "runs past the end")
    expect_error(lambda: infer(output_size=32), INVALID, "should be at least 64 bytes")
    assert_still_serving(client)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "text"),
    [
        ("GET", "/v2/systemsharedmemory/region/r/register", None, 405, "use POST"),
        ("POST", "/v2/systemsharedmemory/status", None, 405, "use GET"),
        ("POST", "/v2/systemsharedmemory/region/r/nonsense", None, 404, "no route"),
        ("POST", "/v2/systemsharedmemory/region/r/register", "{", 400, "malformed JSON"),
        ("POST", "/v2/systemsharedmemory/region/r/register", "[]", 400, "JSON object"),
        ("POST", "/v2/systemsharedmemory/region/r/register", '{"key": "/k"}', 400, "byte_size"),
        (
            "POST",
            "/v2/systemsharedmemory/region/r/register",
            '{"key": "/k", "byte_size": -1}',
            400,
            "non-negative integer",
        ),
    ],
)
def test_malformed_http_requests(
    shm_server: RunningServer, method: str, path: str, body: str | None, status: int, text: str
) -> None:
    answered, _, payload = request(shm_server.http_port, method, path, body)
    assert (answered, text in payload.decode()) == (status, True), payload


def test_malformed_tensor_parameters_over_http(
    shm_server: RunningServer, make_region: Callable[[int], tuple[str, str, Region]]
) -> None:
    name, key, _ = make_region(TENSOR_BYTES)
    port = shm_server.http_port
    assert post_json(port, f"/v2/systemsharedmemory/region/{name}/register", {
        "key": key, "byte_size": TENSOR_BYTES,
    }) == (200, None)  # fmt: skip
    inline = {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": B.ravel().tolist()}

    def infer(parameters: dict[str, Any], data: bool = False) -> tuple[int, Any]:
        tensor = {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16]}
        tensor |= {"parameters": parameters} | ({"data": A.ravel().tolist()} if data else {})
        return post_json(port, "/v2/models/simple/infer", {"inputs": [tensor, inline]})

    try:
        cases = [
            ({"shared_memory_region": name}, False, "needs 'shared_memory_byte_size'"),
            ({"shared_memory_byte_size": 64}, False, "no 'data', binary_data_size or shared"),
            ({"shared_memory_region": 7, "shared_memory_byte_size": 64}, False, "non-empty"),
            ({"shared_memory_region": name, "shared_memory_byte_size": "64"}, False, "integer"),
            ({"shared_memory_region": name, "shared_memory_byte_size": 64}, True, "only one of"),
            # A size no region can hold is refused before anything is allocated for it.
            ({"shared_memory_region": name, "shared_memory_byte_size": 2**63}, False, "runs past"),
        ]
        for parameters, data, text in cases:
            status, document = infer(parameters, data)
            assert (status, text in document["error"]) == (400, True), document
    finally:
        post_json(port, "/v2/systemsharedmemory/unregister", {})


def test_raw_contents_count_with_an_input_in_shared_memory_over_grpc(
    shm_server: RunningServer, make_region: Callable[[int], tuple[str, str, Region]]
) -> None:
    # An input in shared memory has no raw_input_contents entry: one per input is one too many.
    name, key, handle = make_region(TENSOR_BYTES)
    shm.set_shared_memory_region(handle, [A])
    url = f"127.0.0.1:{shm_server.ports['gRPC']}"
    client = grpcclient.InferenceServerClient(url)
    client.register_system_shared_memory(name, key, TENSOR_BYTES)
    try:
        message = simple_request()
        message.inputs[0].parameters["shared_memory_region"].string_param = name
        message.inputs[0].parameters["shared_memory_byte_size"].int64_param = TENSOR_BYTES
        with stub(url) as service, pytest.raises(grpc.RpcError) as caught:
            service.ModelInfer(message)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "expected 1 raw_input_contents" in str(caught.value.details())

        del message.raw_input_contents[0]  # now only INPUT1's bytes: valid
        with stub(url) as service:
            response = service.ModelInfer(message)
        output = np.frombuffer(response.raw_output_contents[0], dtype=np.int32)
        np.testing.assert_array_equal(output.reshape(1, 16), A + B)
    finally:
        client.unregister_system_shared_memory()
        client.close()


def test_truncated_object_is_an_error_not_a_crash(
    client: Client, make_region: Callable[[int], tuple[str, str, Region]]
) -> None:
    # A client may shrink its object after registering it; mapping it would SIGBUS the server.
    name, key, _ = make_region(2 * TENSOR_BYTES)
    client.register_system_shared_memory(name, key, 2 * TENSOR_BYTES)
    os.truncate(f"/dev/shm/{key.lstrip('/')}", 8)
    inputs, outputs = simple_inputs(client), simple_outputs(client)
    inputs[0].set_shared_memory(name, TENSOR_BYTES, offset=TENSOR_BYTES)
    inputs[1].set_data_from_numpy(B)
    expect_error(lambda: client.infer("simple", inputs), INVALID, "shrank")
    outputs[0].set_shared_memory(name, TENSOR_BYTES)
    inputs[0].set_data_from_numpy(A)
    expect_error(lambda: client.infer("simple", inputs, outputs=outputs), INVALID, "shrank")
    assert_still_serving(client)


def test_cuda_shared_memory_is_not_supported(client: Client) -> None:
    if cuda_memory.load() is not None:  # the server sees the same devices as this process
        pytest.skip("CUDA works here: test_cuda_shared_memory.py covers it")
    metadata = client.get_server_metadata()
    extensions = metadata["extensions"] if isinstance(metadata, dict) else metadata.extensions
    assert "cuda_shared_memory" not in extensions
    text = "CUDA shared memory is not supported"
    register = client.register_cuda_shared_memory
    expect_error(lambda: register("gpu", b"\0" * 64, 0, 64), UNSUPPORTED, text)
    # Status and unregister answer with nothing registered, as Triton without GPUs does.
    status = client.get_cuda_shared_memory_status()
    assert (status if isinstance(status, list) else list(status.regions)) == []
    expect_error(lambda: client.get_cuda_shared_memory_status("gpu"), NOT_FOUND, "'gpu'")
    client.unregister_cuda_shared_memory()
    assert_still_serving(client)


def test_refused_unless_enabled(
    server: RunningServer, make_region: Callable[[int], tuple[str, str, Region]]
) -> None:
    # `server` is the session's server, started without --enable-shared-memory.
    name, key, _ = make_region(TENSOR_BYTES)
    client = httpclient.InferenceServerClient(server.http_url)
    assert "system_shared_memory" not in client.get_server_metadata()["extensions"]
    text = "shared memory is disabled"
    expect_error(lambda: client.register_system_shared_memory(name, key, 64), UNSUPPORTED, text)
    expect_error(client.get_system_shared_memory_status, UNSUPPORTED, text)
    inputs = simple_inputs(client)
    inputs[0].set_shared_memory(name, TENSOR_BYTES)
    inputs[1].set_data_from_numpy(B)
    expect_error(lambda: client.infer("simple", inputs), UNSUPPORTED, text)

    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{server.ports['gRPC']}")
    expect_error(lambda: grpc.register_system_shared_memory(name, key, 64), UNSUPPORTED, text)
    assert_still_serving(client)
