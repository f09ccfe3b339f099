"""A ModelInfer answer's encoding alone: through protobuf vs with the raw outputs appended.

    python benchmarks/grpc_serializer.py [--seconds 1]

Turns one InferResponse with one FP32 output into the bytes grpc sends, both ways, in this
process, for the MLP's batch-1 answer (1x256), a 16x1000 output and a 4 MiB one:
"protobuf" copies each output into `bytes`, into the message's `raw_output_contents` and into
the serialised message (inferd before the wire serializer); "appended" is inferd's codec and
`frontends/grpc/wire.py` (one copy). Prints µs per answer and output bytes per second (best of
five rounds, so other work on the machine weighs less) after checking both give the same bytes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from inferd.core.datatypes import v2_datatype
from inferd.core.types import InferResponse
from inferd.frontends.grpc.codec import encode_infer_response, encode_parameters
from inferd.frontends.grpc.wire import serialize_infer_response
from inferd.frontends.tensors import raw_bytes

SHAPES = [(1, 256), (16, 1000), (64, 16384)]


def through_protobuf(response: InferResponse) -> bytes:
    message = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id
    )
    encode_parameters(response.parameters, message.parameters)
    for name, array in response.outputs.items():
        datatype = v2_datatype(array.dtype)
        message.outputs.add(name=name, datatype=datatype, shape=array.shape)
        data = raw_bytes(array, datatype)
        message.raw_output_contents.append(data if isinstance(data, bytes) else data.tobytes())
    serialized: bytes = message.SerializeToString()
    return serialized


def appended(response: InferResponse) -> bytes:
    return serialize_infer_response(encode_infer_response(response, pb.ModelInferResponse()))


def _round(encode: Callable[[InferResponse], bytes], response: InferResponse, calls: int) -> float:
    begin = time.perf_counter()
    for _ in range(calls):
        encode(response)
    return time.perf_counter() - begin


def seconds_per_call(
    encode: Callable[[InferResponse], bytes], response: InferResponse, seconds: float
) -> float:
    """Best of five rounds of about `seconds / 5` each: the least disturbed one."""
    calls = 1
    while (spent := _round(encode, response, calls)) < 0.01:
        calls *= 2
    calls = max(1, round(calls * seconds / 5 / spent))
    return min(_round(encode, response, calls) / calls for _ in range(5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per way and shape")
    seconds = parser.parse_args().seconds
    print(f"{'output':<18} {'way':<10} {'µs/answer':>10} {'MB/s':>10} {'x protobuf':>11}")
    for shape in SHAPES:
        array = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        response = InferResponse("mlp", "1", {"output": array}, id="7")
        if through_protobuf(response) != appended(response):
            raise SystemExit(f"{shape}: the two ways give different bytes")
        reference = seconds_per_call(through_protobuf, response, seconds)
        for way, encode in (("protobuf", through_protobuf), ("appended", appended)):
            spent = reference if way == "protobuf" else seconds_per_call(encode, response, seconds)
            print(
                f"{'FP32 ' + 'x'.join(map(str, shape)):<18} {way:<10} {spent * 1e6:>10.1f} "
                f"{array.nbytes / spent / 1e6:>10.0f} {reference / spent:>10.2f}x"
            )


if __name__ == "__main__":
    main()
