"""inferd's HTTP express lane against the bare-bones baseline, in-process: CPU per request
without sockets, the kernel or the scheduler.

    python benchmarks/request_express.py [--servers inferd baseline] [--rounds 2]
                                         [--requests 10000] [--concurrency 8] [--profile FILE]
                                         [--batching off|on]

Each server is built as it serves: inferd's HTTP frontend behind its own protocol class (so an
infer request takes the express lane, http/protocol.py), with statistics, Prometheus metrics,
the trace log and the Triton tracer observing; `baseline_server.py`'s app behind uvicorn's
httptools protocol (its model thread takes each request, or batch). `--batching on` gives both
the batching of `request_path.py` (16 requests, 500 us). Both serve the example MLP (one
intra-op thread). `--concurrency` connections are opened on a fake transport; each sends the next
request (`perf_analyzer`'s batch-1 binary request, bytes as they come off the socket) as soon
as its answer is written, so the protocols parse, route, run and answer exactly as under load,
minus the system calls. The figures are the process's CPU time per request (every thread: the
baseline's model thread too) and the event loop thread's; run it pinned (`taskset -c 0`) to
count what one CPU does.

Where `request_path.py` finds inferd behind the baseline on one CPU but this does not, the
difference is not in inferd's Python: look at the socket path, or at what else ran on that
CPU (a busy neighbour favours the baseline's two threads, which sleep and wake per request,
over inferd's event loop, which never sleeps under load). The servers alternate within each
round; `--profile` writes a cProfile of the loop thread (CPU time) for the last inferd run.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from baseline_run import DELAY_US, MAX_BATCH
from common import write_mlp_repository
from request_path import BATCHING, CONFIG

WIDTH = 256  # the MLP's input and output width
WARM_UP = 2000


def mlp_request() -> bytes:
    """A batch-1 binary-tensor infer request to `mlp`, as `perf_analyzer` sends it."""
    data = np.random.default_rng(0).random((1, WIDTH), dtype=np.float32).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [1, WIDTH],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(data)},
                }
            ],
            "outputs": [{"name": "output", "parameters": {"binary_data": True}}],
        }
    ).encode()
    head = (
        b"POST /v2/models/mlp/infer HTTP/1.1\r\nhost: 127.0.0.1:8000\r\naccept: */*\r\n"
        b"content-type: application/octet-stream\r\n"
        b"inference-header-content-length: %d\r\ncontent-length: %d\r\n\r\n"
        % (len(header), len(header) + len(data))
    )
    return head + header + data


class Client(asyncio.Transport):
    """One connection's transport: it takes the server's writes, and once an answer is
    complete (its head says how long its body is) sends the next request, if any are left."""

    def __init__(self, protocol: asyncio.Protocol, send_next: Callable[[Client], None]) -> None:
        super().__init__()
        self.protocol = protocol
        self.answers: list[bytes] = []
        self._send_next = send_next
        self._pending = b""
        self._closing = False
        # Kept: asyncio.get_running_loop() costs a system call on CPython 3.11 (see
        # inferd/core/running_loop.py), which would count against both servers.
        self._loop = asyncio.get_running_loop()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._pending += bytes(data)
        head, _, body = self._pending.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        if len(body) < length:
            return  # the baseline writes an answer's head and body apart
        self.answers.append(self._pending)
        self._pending = b""
        self._loop.call_soon(self._send_next, self)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def inferd_app(repository: Path) -> tuple[Any, type[HttpToolsProtocol], Any]:
    """inferd's HTTP frontend as `inferd serve` builds it, its protocol class, its engine."""
    from inferd.cli.serve import build_engine
    from inferd.cli.settings import ServerSettings
    from inferd.core.runtime_settings import RuntimeControls
    from inferd.frontends.http.app import HttpFrontend
    from inferd.frontends.http.protocol import protocol_class
    from inferd.metrics.prometheus import PrometheusMetrics
    from inferd.metrics.statistics import Statistics
    from inferd.metrics.trace import TraceLog
    from inferd.metrics.triton_trace import TritonTracer

    statistics = Statistics()
    tracer = TritonTracer({})
    observers = [statistics, PrometheusMetrics(statistics), TraceLog(0), tracer]
    settings = ServerSettings((str(repository),))
    engine = build_engine(settings, observers, statistics, None, RuntimeControls(tracer), None)
    await engine.start()
    app = HttpFrontend(engine)
    return app, protocol_class(16 * 1024, express=app), engine


def baseline_app(model: Path, batching: str) -> Any:
    import onnxruntime as ort

    from baseline_server import BaselineApp

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return (
        BaselineApp(session, MAX_BATCH, DELAY_US)
        if batching == "on"
        else BaselineApp(session, 1, 0)
    )


class Load:
    """`concurrency` connections to one protocol class, each sending its next request as soon
    as its answer is written; `run` sends `requests` in all and waits for every answer."""

    def __init__(self, protocol: type[HttpToolsProtocol], app: Any, concurrency: int) -> None:
        config = uvicorn.Config(
            app=app, http=protocol, lifespan="off", access_log=False, loop="none"
        )
        config.load()
        state = ServerState()
        self._loop = asyncio.get_running_loop()
        self._request = mlp_request()
        self._left = self._in_flight = 0
        self._done: asyncio.Future[None] = self._loop.create_future()
        self.clients: list[Client] = []
        for _ in range(concurrency):
            connection = protocol(config=config, server_state=state, app_state={}, _loop=self._loop)
            client = Client(connection, self._send_next)
            connection.connection_made(client)
            self.clients.append(client)

    async def run(self, requests: int) -> None:
        self._left, self._done = requests, self._loop.create_future()
        for client in self.clients:
            self._send_next(client, answered=False)
        await self._done

    def close(self) -> None:
        for client in self.clients:
            client.protocol.connection_lost(None)

    def _send_next(self, client: Client, answered: bool = True) -> None:
        self._in_flight -= answered
        if self._left == 0:
            if not self._in_flight:
                self._done.set_result(None)
            return
        self._left -= 1
        self._in_flight += 1
        client.protocol.data_received(self._request)


async def measure(
    server: str, repository: Path, model: Path, args: argparse.Namespace, profile: str | None
) -> None:
    engine = None
    if server == "inferd":
        app, protocol, engine = await inferd_app(repository)
    else:
        app, protocol = baseline_app(model, args.batching), HttpToolsProtocol
    load = Load(protocol, app, args.concurrency)
    await load.run(WARM_UP)
    answer = load.clients[0].answers[-1]
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)  # as `inferd serve` settles it
    profiler = cProfile.Profile(time.thread_time) if profile else None
    process, thread = time.process_time(), time.thread_time()
    if profiler is not None:
        profiler.enable()
    await load.run(args.requests)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)  # type: ignore[arg-type]
    process, thread = time.process_time() - process, time.thread_time() - thread
    load.close()
    if engine is not None:
        await engine.stop()
    print(
        f"{server:9} {process / args.requests * 1e6:7.1f} us CPU/request, "
        f"{thread / args.requests * 1e6:7.1f} of it on the event loop",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", nargs="+", default=["inferd", "baseline"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--profile")
    parser.add_argument("--batching", choices=["off", "on"], default="off")
    args = parser.parse_args()
    import uvloop

    with tempfile.TemporaryDirectory() as folder:
        repository = Path(folder)
        model = write_mlp_repository(
            repository, CONFIG.format(max_batch=MAX_BATCH, batching=BATCHING[args.batching])
        )
        for round_ in range(args.rounds):
            for server in args.servers:
                last = round_ == args.rounds - 1 and server == "inferd"
                profile = args.profile if last else None
                uvloop.run(measure(server, repository, model, args, profile))


if __name__ == "__main__":
    main()
