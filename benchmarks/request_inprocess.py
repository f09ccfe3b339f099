"""inferd's own CPU per request, with no socket: the frontends called in-process.

    python benchmarks/request_inprocess.py [--cases http-c1-off http-c32-on grpc-c32-on]
                                           [--requests 20000] [--profile FILE] [--engine-only]

The engine is built as `inferd serve` builds it (statistics, Prometheus metrics, the trace
log and the Triton tracer all observing), with the example `simple` model (two INT32[16]
inputs; the model costs a few microseconds) with and without dynamic batching. Each case sends
`--requests` batch-1 requests from `c` concurrent tasks:
- `http-*`: to the ASGI app as uvicorn would (scope, the body in one message, binary tensors
  in and out, as `perf_analyzer` sends them);
- `grpc-*`: through the gRPC method's deserializer, servicer and serializer, as grpc.aio
  would call them (a `ModelInferRequest` with raw input contents);
- with `--engine-only`: the decoded request (`InferRequest`) straight to `Engine.infer`, so
  the figures are the engine's, the scheduler's, the instance's and the observers' alone.
The figures are the process's CPU time (every thread) and the event loop thread's over the
requests: what inferd adds per request, without uvicorn's or grpc's own cost. `--profile`
writes a cProfile of the event loop's thread (its CPU time) for the last case (read it with
`python -m pstats FILE`); `--stages` profiles each case in a second run and splits the loop's
figure by stage (decode, validation, statistics and metrics, encode, the rest).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import pstats
import resource
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from request_cpu import CASES, SIMPLE, write_repositories

# (stage, the functions (file, name) whose cumulative time it is), for the breakdown of a
# profile. The rest is routing, the scheduler's queue and batch, the hand-offs and asyncio.
STAGES = [
    (
        "decode",
        [
            ("grpc/codec.py", "decode_infer_request"),
            ("grpc/known_requests.py", "decode"),
            ("http/codec.py", "decode_infer_request"),
            ("http/known_headers.py", "decode"),
        ],
    ),
    ("validation", [("engine/engine.py", "_prepare")]),
    (
        "statistics and metrics",
        [("engine/engine.py", "_finished"), ("engine/version_loading.py", "report")],
    ),
    (
        "encode",
        [
            ("grpc/codec.py", "encode_infer_response"),
            ("grpc/unary_headers.py", "encode"),
            ("grpc/wire.py", "serialize_infer_response"),
            ("http/codec.py", "encode_infer_response"),
            ("http/binary_answers.py", "encode"),
        ],
    ),
]
WIDTH = 16


def http_request(model: str) -> tuple[dict[str, Any], bytes]:
    """The scope and body of a V2 binary-tensor infer request, as perf_analyzer sends it."""
    data = np.arange(WIDTH, dtype=np.int32).reshape(1, WIDTH).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": [1, WIDTH],
                    "datatype": "INT32",
                    "parameters": {"binary_data_size": len(data)},
                }
                for name in ("INPUT0", "INPUT1")
            ],
            "outputs": [
                {"name": name, "parameters": {"binary_data": True}}
                for name in ("OUTPUT0", "OUTPUT1")
            ],
        }
    ).encode()
    body = header + data + data
    path = f"/v2/models/{model}/infer"
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"accept", b"*/*"),
            (b"content-type", b"application/octet-stream"),
            (b"inference-header-content-length", str(len(header)).encode()),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    return scope, body


def grpc_request(model: str) -> bytes:
    data = np.arange(WIDTH, dtype=np.int32).reshape(1, WIDTH).tobytes()
    message = pb.ModelInferRequest(model_name=model)
    for name in ("INPUT0", "INPUT1"):
        message.inputs.add(name=name, datatype="INT32", shape=[1, WIDTH])
        message.raw_input_contents.append(data)
    for name in ("OUTPUT0", "OUTPUT1"):
        message.outputs.add(name=name)
    return message.SerializeToString()


class _Context:
    """What the servicer's unary infer uses of grpc.aio's context."""

    def invocation_metadata(self) -> tuple[()]:
        return ()

    async def abort(self, code: Any, details: str) -> None:
        raise RuntimeError(f"{code}: {details}")


Sender = Callable[[], Awaitable[None]]


def _http_sender(engine: Any, model: str) -> Sender:
    """One request to the ASGI app, as uvicorn hands it over."""
    from inferd.frontends.http.app import HttpFrontend

    app = HttpFrontend(engine)
    scope, body = http_request(model)

    async def one() -> None:
        sent: list[dict[str, Any]] = []
        read = False

        async def receive() -> dict[str, Any]:
            nonlocal read
            if read:  # uvicorn's receive after the body: waits for a disconnect
                await asyncio.get_running_loop().create_future()
            read = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(dict(scope), receive, send)
        assert sent[0]["status"] == 200, sent

    return one


def _engine_sender(engine: Any, model: str) -> Sender:
    """One request straight to `Engine.infer`, as a frontend hands it over once decoded: the
    engine, scheduler, instance and observers alone."""
    from inferd.core.types import InferRequest, RequestedOutput

    data = np.arange(WIDTH, dtype=np.int32).reshape(1, WIDTH)

    async def one() -> None:
        inputs = {"INPUT0": data, "INPUT1": data}
        outputs = [RequestedOutput("OUTPUT0"), RequestedOutput("OUTPUT1")]
        await engine.infer(InferRequest(model, inputs, outputs=outputs))

    return one


def _grpc_sender(engine: Any, model: str) -> Sender:
    """One ModelInfer call, as grpc.aio makes it: servicer (which decodes the call's bytes
    itself, without a deserializer), serializer."""
    from inferd.frontends.grpc.servicer import GrpcFrontend
    from inferd.frontends.grpc.wire import serialize_infer_response

    frontend = GrpcFrontend(engine)
    data = grpc_request(model)
    context = _Context()

    async def one() -> None:
        answer = await frontend.ModelInfer(data, context)
        serialize_infer_response(answer)

    return one


async def run_case(
    repository: Path, case: str, requests: int, profile: str | None, engine_only: bool = False
) -> float:
    from inferd.cli.serve import build_engine
    from inferd.cli.settings import ServerSettings
    from inferd.core.runtime_settings import RuntimeControls
    from inferd.metrics.prometheus import PrometheusMetrics
    from inferd.metrics.statistics import Statistics
    from inferd.metrics.trace import TraceLog
    from inferd.metrics.triton_trace import TritonTracer

    protocol, concurrency, batching = CASES[case]
    model = SIMPLE
    settings = ServerSettings((str(repository / batching),))
    statistics = Statistics()
    metrics = PrometheusMetrics(statistics)
    tracer = TritonTracer({})
    controls = RuntimeControls(tracer)
    observers = [statistics, metrics, TraceLog(0), tracer]
    engine = build_engine(settings, observers, statistics, None, controls, None)
    await engine.start()
    if engine_only:
        one = _engine_sender(engine, model)
    else:
        one = _http_sender(engine, model) if protocol == "http" else _grpc_sender(engine, model)

    async def worker(count: int) -> None:
        for _ in range(count):
            await one()

    await asyncio.gather(*(worker(50) for _ in range(concurrency)))  # warm-up
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)  # as `inferd serve` settles it
    # The loop thread's CPU time, not the wall clock: a wait for the GIL is no cost of its own.
    profiler = cProfile.Profile(time.thread_time) if profile else None
    per_worker = requests // concurrency
    usage = resource.getrusage(resource.RUSAGE_SELF)
    loop_cpu = time.thread_time()
    start = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    await asyncio.gather(*(worker(per_worker) for _ in range(concurrency)))
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    loop_cpu = time.thread_time() - loop_cpu
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - usage.ru_utime + after.ru_stime - usage.ru_stime
    done = per_worker * concurrency
    await engine.stop()
    label = f"{case.split('-', 1)[1]} engine" if engine_only else case
    print(
        f"{label:13} {cpu / done * 1e6:7.1f} us CPU/request, {loop_cpu / done * 1e6:7.1f} of it "
        f"on the event loop ({done / elapsed:,.0f}/s wall, {cpu / elapsed:.2f} CPUs)",
        flush=True,
    )
    return loop_cpu / done * 1e6


def print_stages(profile: str, loop_us: float) -> None:
    """The event loop's CPU per request by stage: each stage's share of the profiled time
    (cumulative; none of these calls another) times the figure measured without profiling."""
    stats: Any = pstats.Stats(profile)
    total = stats.total_tt
    left = total
    for stage, functions in STAGES:
        seconds = sum(
            row[3]
            for (filename, _, name), row in stats.stats.items()
            if any(filename.endswith(f) and name == n for f, n in functions)
        )
        left -= seconds
        print(f"  {stage:24} {seconds / total * loop_us:6.1f} us")
    print(f"  {'the rest':24} {left / total * loop_us:6.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--profile")
    parser.add_argument(
        "--stages", action="store_true", help="run each case again under cProfile: by stage"
    )
    parser.add_argument(
        "--engine-only",
        action="store_true",
        help="send decoded requests straight to Engine.infer: no frontend (the case's "
        "concurrency and batching apply, its protocol does not)",
    )
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as folder:
        repository = Path(folder)
        write_repositories(repository, mlp=False)
        for case in args.cases:
            last = case == args.cases[-1]
            profile = args.profile if last else None
            only = args.engine_only
            loop_us = asyncio.run(run_case(repository, case, args.requests, profile, only))
            if args.stages:
                profile = str(repository / "stages.prof")
                asyncio.run(run_case(repository, case, args.requests, profile, only))
                print_stages(profile, loop_us)


if __name__ == "__main__":
    main()
