"""What gRPC itself costs per call here, and what inferd adds on top, in one run.

    python benchmarks/grpc_floor.py [--concurrency 1 32] [--window-ms 2000] [--rounds 2]

Each server runs pinned to `--server-cpus` and is loaded by Triton's `perf_analyzer`
(`ModelInfer`, batch 1, the example MLP's 1x256 FP32 input) from `--client-cpus`:
- `grpc.aio floor`: a `grpc.aio` server whose ModelInfer hands back a ready-made answer
  (no parsing, no model): the transport alone;
- `grpc.aio floor + options`: the same with the channel options that might help
  (no per-call allocation quota, larger HTTP/2 write buffer, no max-connection-age);
- `grpc sync floor`: the synchronous server with a thread pool, same ready-made answer;
- `grpclib floor`: the pure-Python asyncio implementation (if `grpclib` is installed);
- `inferd gRPC` and `inferd HTTP binary`: the real server with the MLP, batching on.
Prints throughput, p50/p99 and the server's CPU per request (user + system, from /proc), so the
part of inferd's gRPC cost that is grpc's own can be read off directly.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb

from baseline_run import MAX_BATCH
from common import free_port, served, write_mlp_repository
from request_path import BATCHING, CONFIG, Sample, perf_analyzer

SERVICE = "inference.GRPCInferenceService"
WIDTH = 256


def ready_answers() -> dict[str, bytes]:
    """The serialised answers a floor server gives, by method name."""
    tensor = {"datatype": "FP32", "shape": [-1, WIDTH]}
    metadata = pb.ModelMetadataResponse(
        name="mlp",
        versions=["1"],
        platform="onnxruntime_onnx",
        inputs=[pb.ModelMetadataResponse.TensorMetadata(name="input", **tensor)],
        outputs=[pb.ModelMetadataResponse.TensorMetadata(name="output", **tensor)],
    )
    config = pb.ModelConfigResponse(
        config=mc.ModelConfig(
            name="mlp",
            platform="onnxruntime_onnx",
            max_batch_size=MAX_BATCH,
            input=[mc.ModelInput(name="input", data_type=mc.TYPE_FP32, dims=[WIDTH])],
            output=[mc.ModelOutput(name="output", data_type=mc.TYPE_FP32, dims=[WIDTH])],
        )
    )
    infer = pb.ModelInferResponse(model_name="mlp", model_version="1")
    infer.outputs.add(name="output", datatype="FP32", shape=[1, WIDTH])
    infer.raw_output_contents.append(np.zeros(WIDTH, np.float32).tobytes())
    return {
        "ModelInfer": infer.SerializeToString(),
        "ModelMetadata": metadata.SerializeToString(),
        "ModelConfig": config.SerializeToString(),
        "ServerMetadata": pb.ServerMetadataResponse(name="floor", version="0").SerializeToString(),
        "ServerLive": pb.ServerLiveResponse(live=True).SerializeToString(),
        "ServerReady": pb.ServerReadyResponse(ready=True).SerializeToString(),
        "ModelReady": pb.ModelReadyResponse(ready=True).SerializeToString(),
    }


def _identity(data: bytes) -> bytes:
    return data


def _grpc_handlers(grpc: Any, answers: dict[str, bytes], asynchronous: bool) -> Any:
    def behaviour(answer: bytes) -> Callable[..., Any]:
        if asynchronous:

            async def reply(request: bytes, context: Any) -> bytes:
                return answer

            return reply
        return lambda request, context: answer

    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            behaviour(answer), request_deserializer=_identity, response_serializer=_identity
        )
        for name, answer in answers.items()
    }
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


OPTIONS = [
    ("grpc.max_concurrent_streams", 1000),
    ("grpc.http2.write_buffer_size", 1 << 20),
    ("grpc.max_send_message_length", 1 << 26),
    ("grpc.max_receive_message_length", 1 << 26),
    ("grpc.resource_quota_size", -1),
]


def serve_grpc_aio(port: int, with_options: bool) -> None:
    import grpc
    import uvloop

    async def run() -> None:
        server = grpc.aio.server(options=OPTIONS if with_options else None)
        server.add_generic_rpc_handlers((_grpc_handlers(grpc, ready_answers(), True),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    uvloop.run(run())


def serve_grpc_sync(port: int) -> None:
    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((_grpc_handlers(grpc, ready_answers(), False),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def serve_grpclib(port: int) -> None:
    import grpclib.const
    import grpclib.encoding.base
    import grpclib.server
    import uvloop

    class RawCodec(grpclib.encoding.base.CodecBase):  # type: ignore[misc]
        __content_subtype__ = "proto"

        def encode(self, message: bytes, message_type: Any) -> bytes:
            return message

        def decode(self, data: bytes, message_type: Any) -> bytes:
            return data

    class Floor:
        def __mapping__(self) -> dict[str, grpclib.const.Handler]:
            def handler(answer: bytes) -> Callable[..., Any]:
                async def reply(stream: Any) -> None:
                    await stream.recv_message()
                    await stream.send_message(answer)

                return reply

            return {
                f"/{SERVICE}/{name}": grpclib.const.Handler(
                    handler(answer), grpclib.const.Cardinality.UNARY_UNARY, bytes, bytes
                )
                for name, answer in ready_answers().items()
            }

    async def run() -> None:
        server = grpclib.server.Server([Floor()], codec=RawCodec())
        await server.start("127.0.0.1", port)
        await server.wait_closed()

    uvloop.run(run())


FLOORS: dict[str, Callable[[int], None]] = {
    "grpc.aio floor": lambda port: serve_grpc_aio(port, False),
    "grpc.aio floor + options": lambda port: serve_grpc_aio(port, True),
    "grpc sync floor": serve_grpc_sync,
    "grpclib floor": serve_grpclib,
}


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def measured(
    pid: int, url: str, protocol: str, concurrency: int, args: argparse.Namespace
) -> tuple[Sample, float] | None:
    """perf_analyzer's figures and the server's CPU µs per request over the whole run."""
    before, start = cpu_seconds(pid), time.monotonic()
    sample = perf_analyzer(url, protocol, [], concurrency, args)
    if sample is None:
        return None
    spent = cpu_seconds(pid) - before
    requests = sample.throughput * (time.monotonic() - start)
    return sample, spent / requests * 1e6


@contextmanager
def floor_server(name: str, args: argparse.Namespace) -> Iterator[tuple[int, str]]:
    port = free_port()
    command = ["taskset", "-c", args.server_cpus, sys.executable, __file__, "--serve", name]
    server = subprocess.Popen([*command, "--port", str(port)])
    try:
        time.sleep(2)
        if server.poll() is not None:
            raise RuntimeError(f"{name} did not start")
        yield server.pid, f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait()


Results = dict[tuple[str, int], list[tuple[Sample, float]]]


def one_round(repository: Path, args: argparse.Namespace, results: Results) -> None:
    for name in FLOORS:
        if name == "grpclib floor" and not _has_grpclib():
            continue
        with floor_server(name, args) as (pid, url):
            for concurrency in args.concurrency:
                figures = measured(pid, url, "grpc", concurrency, args)
                if figures:
                    results[(name, concurrency)].append(figures)
    with served(repository, cpu=args.server_cpus) as server:
        pid = server.process.pid
        for name, protocol, url in (
            ("inferd gRPC", "grpc", server.grpc_url),
            ("inferd HTTP binary", "http", server.http_url),
        ):
            for concurrency in args.concurrency:
                figures = measured(pid, url, protocol, concurrency, args)
                if figures:
                    results[(name, concurrency)].append(figures)


def _has_grpclib() -> bool:
    try:
        import grpclib  # noqa: F401
    except ImportError:
        print("grpclib is not installed: its floor is left out (pip install grpclib)")
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--window-ms", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    parser.add_argument("--serve", choices=list(FLOORS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        FLOORS[args.serve](args.port)
        return
    results: Results = defaultdict(list)
    with tempfile.TemporaryDirectory() as folder:
        repository = Path(folder)
        write_mlp_repository(
            repository, CONFIG.format(max_batch=MAX_BATCH, batching=BATCHING["on"])
        )
        for number in range(args.rounds):
            print(f"round {number + 1} of {args.rounds}", flush=True)
            one_round(repository, args, results)
    print(f"\nbest of {args.rounds} rounds by throughput; server pinned to CPU {args.server_cpus}")
    print(f"{'server':<26} {'c':>3} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'CPU µs/req':>11}")
    for (name, concurrency), runs in results.items():
        sample, cpu_us = max(runs, key=lambda run: run[0].throughput)
        print(
            f"{name:<26} {concurrency:>3} {sample.throughput:9,.0f} {sample.p50_ms:7.2f} "
            f"{sample.p99_ms:7.2f} {cpu_us:11.0f}"
        )


if __name__ == "__main__":
    main()
