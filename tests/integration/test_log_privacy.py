"""Request bodies and tensor values never reach the server's log, not even at the highest
verbosity (`--log-level debug --log-verbose` at its top): only shapes, sizes and timings."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from tests.integration.fuzz_requests import fuzz_repository
from tests.integration.http_helpers import request
from tests.integration.server import running_server

# Values no log line has any other reason to hold.
NUMBERS = [918273645, -771122334, 1357924680, 246813579]
SECRET = "s3cr3t-tensor-value-QX7"
SECRETS = [SECRET, "pässwörd-ZZ9-value", "another-secret-PL4"]


def _numbers(rows: int = 1) -> list[int]:
    return (NUMBERS * 4)[:16] * rows


def _http_requests(port: int) -> list[int]:
    statuses = []
    good = {
        "id": "request-1",
        "inputs": [
            {"name": name, "shape": [1, 16], "datatype": "INT32", "data": _numbers()}
            for name in ("INPUT0", "INPUT1")
        ],
    }
    text = {"inputs": [{"name": "INPUT0", "shape": [1, 3], "datatype": "BYTES", "data": SECRETS}]}
    # An invalid request whose error could echo the values: strings where numbers belong.
    bad = {"inputs": [{"name": "INPUT0", "shape": [1, 2], "datatype": "INT32",
                       "data": [SECRET, SECRETS[1]]}]}  # fmt: skip
    for model, document in (("simple", good), ("text", text), ("simple", bad)):
        status, _, _ = request(port, "POST", f"/v2/models/{model}/infer", json.dumps(document))
        statuses.append(status)
    # Binary tensor data, and a binary request whose sizes do not add up.
    raw = struct.pack("<16i", *_numbers())
    header = json.dumps({"inputs": [
        {"name": name, "shape": [1, 16], "datatype": "INT32",
         "parameters": {"binary_data_size": len(raw)}} for name in ("INPUT0", "INPUT1")
    ]}).encode()  # fmt: skip
    for body in (header + raw + raw, header + raw + SECRET.encode()):
        headers = {"Inference-Header-Content-Length": str(len(header))}
        statuses.append(request(port, "POST", "/v2/models/simple/infer", body, headers)[0])
    # Not JSON at all, with the values inside.
    statuses.append(request(port, "POST", "/v2/models/simple/infer", f"{{{SECRET}")[0])
    return statuses


def _grpc_requests(url: str) -> list[grpc.StatusCode]:
    codes = []
    good = pb.ModelInferRequest(model_name="simple", id="request-2")
    for name in ("INPUT0", "INPUT1"):
        good.inputs.add(name=name, datatype="INT32", shape=[1, 16]).contents.int_contents.extend(
            _numbers()
        )
    raw = pb.ModelInferRequest(model_name="simple")
    for name in ("INPUT0", "INPUT1"):
        raw.inputs.add(name=name, datatype="INT32", shape=[1, 16])
    raw.raw_input_contents.extend([np.array(_numbers(), np.int32).tobytes()] * 2)
    text = pb.ModelInferRequest(model_name="text")
    tensor = text.inputs.add(name="INPUT0", datatype="BYTES", shape=[1, 3])
    tensor.contents.bytes_contents.extend(s.encode() for s in SECRETS)
    wrong = pb.ModelInferRequest(model_name="simple")  # strings where numbers belong
    tensor = wrong.inputs.add(name="INPUT0", datatype="INT32", shape=[1, 3])
    tensor.contents.bytes_contents.extend(s.encode() for s in SECRETS)
    sized = pb.ModelInferRequest(model_name="text")  # BYTES whose lengths do not add up
    sized.inputs.add(name="INPUT0", datatype="BYTES", shape=[1, 2])
    sized.raw_input_contents.append(struct.pack("<I", 99) + SECRET.encode())
    with grpc.insecure_channel(url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        for message in (good, raw, text, wrong, sized):
            try:
                stub.ModelInfer(message, timeout=30)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())
        answers = list(stub.ModelStreamInfer(iter([good, wrong]), timeout=30))
        codes += [grpc.StatusCode.OK if not a.error_message else grpc.StatusCode.INVALID_ARGUMENT
                  for a in answers]  # fmt: skip
    return codes


def test_no_tensor_value_in_the_log_at_the_highest_verbosity(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    repository: Path = fuzz_repository(tmp_path_factory.mktemp("privacy"))
    flags = ("--log-level", "debug", "--log-verbose", "9")
    with running_server(repository, *flags) as server:
        statuses = _http_requests(server.http_port)
        codes = _grpc_requests(server.grpc_url)
    assert statuses == [200, 200, 400, 200, 400, 400]
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    ok = grpc.StatusCode.OK
    assert codes == [ok, ok, ok, invalid, invalid, ok, invalid]
    log = server.log_text()
    assert "request model=simple" in log  # the verbose lines are there, and hold no values
    for value in [*map(str, NUMBERS), *SECRETS, SECRETS[1].encode().hex()]:
        assert value not in log, value
