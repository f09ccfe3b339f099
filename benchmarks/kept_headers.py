"""The decode of a request whose header was seen before, by tensor size: HTTP's
`KnownHeaders` and gRPC's `KnownRequests`, each request's bytes new (as they come off the
wire, their hash not yet computed).

    python benchmarks/kept_headers.py [--requests 300]

Prints µs per decode for a one-input FP32 request of 1 KB and of 1 MB. A look-up whose cost
grows with the tensor (hashing the whole body) shows as the 1 MB figure far above the 1 KB one.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

from tritonclient.grpc import service_pb2 as pb

from inferd.frontends.grpc.known_requests import KnownRequests
from inferd.frontends.http.known_headers import KnownHeaders
from inferd.frontends.shared_memory import DISABLED

SIZES = (1024, 1024 * 1024)  # bytes of the one FP32 input


def http_bodies(size: int, count: int) -> tuple[list[bytes], Callable[[bytes], object]]:
    """`count` binary-tensor bodies with one header, and a decode of one through a plan."""
    shape = [1, size // 4]
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": shape,
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    ).encode()
    known = KnownHeaders()
    return [header + os.urandom(size) for _ in range(count)], lambda body: known.decode(
        body, len(header), "m", "", DISABLED
    )


def grpc_calls(size: int, count: int) -> tuple[list[bytes], Callable[[bytes], object]]:
    """`count` serialized ModelInfer calls with one header, and a decode of one."""
    known = KnownRequests()
    calls = []
    for _ in range(count):
        message = pb.ModelInferRequest(model_name="m")
        message.inputs.add(name="x", datatype="FP32", shape=[1, size // 4])
        message.raw_input_contents.append(os.urandom(size))
        calls.append(message.SerializeToString())
    return calls, lambda data: known.decode(data, DISABLED)


def per_decode_us(requests: list[bytes], decode: Callable[[bytes], object]) -> float:
    decode(requests[0])  # decoded in full, its plan kept
    started = time.perf_counter()
    for request in requests[1:]:
        decode(request)
    return (time.perf_counter() - started) / (len(requests) - 1) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    for name, make in (("HTTP", http_bodies), ("gRPC", grpc_calls)):
        for size in SIZES:
            figure = per_decode_us(*make(size, args.requests))
            print(f"{name:5} {size:>8} bytes: {figure:8.2f} us per decode", flush=True)


if __name__ == "__main__":
    main()
