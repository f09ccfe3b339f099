"""The IPC path alone of a multi-process frontend design: a frontend process hands a decoded
request to an engine process and gets the answer back.

    python benchmarks/ipc_roundtrip.py [--seconds 3] [--concurrency 1 32] [--elements 256]

The "engine" echoes each request's tensor back (no model), so what is measured is the hop:
- `pipe, in-band`: multiprocessing.connection send_bytes/recv_bytes, blocking, tensor bytes in
  the message (concurrency 1 only: one request in flight);
- `unix socket, in-band`: uvloop streams on a Unix socket, length-prefixed frames carrying a
  small header and the tensor bytes, `--concurrency` requests in flight from one frontend;
- `unix socket + shared memory`: the same frames carry only a descriptor (slot, shape, dtype);
  the frontend writes the tensor into its slot of a shared-memory arena and the engine writes
  the answer into the same slot (one copy each way, as a real frontend would make when it
  decodes the request body into the arena instead of into its own buffer).
Prints round trips per second, p50/p99 µs, and CPU µs per round trip of each process.

Then inferd's own worker-process path for a decoupled Python model (`isolation: process`),
driven through `IsolatedInstance` as the scheduler drives it, no frontend: for each
`--stream-bytes` size (default 1 KiB and 1 MiB of FP32), the round trip of a request answered
with one response (execute in the worker, the response back in the server's channel: p50/p99
µs), and the cost per response of a request streaming `--stream-responses` of them (its wall
time over its responses: p50/p99 over the requests; and the CPU time per response of the
server's process and of the worker, which a loaded machine disturbs less). Run it with
PYTHONPATH naming the checkout to measure (the `src` of main, or of a branch).
`--worker-only` skips the sections above.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import struct
import tempfile
import time
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

# Frame: request id, slot (-1: bytes in-band), element count; then in-band bytes if any.
HEADER = struct.Struct("<qqq")
LENGTH = struct.Struct("<I")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- pipe -----------------------------------------------------------------------------------


def pipe_engine(connection: Connection) -> None:
    start = cpu_seconds()
    while (message := connection.recv_bytes()) != b"":
        connection.send_bytes(message)
    connection.send(cpu_seconds() - start)


def pipe_frontend(elements: int, seconds: float) -> tuple[list[float], float, float]:
    ours, theirs = multiprocessing.Pipe()
    engine = multiprocessing.Process(target=pipe_engine, args=(theirs,))
    engine.start()
    payload = np.ones(elements, np.float32).tobytes()
    latencies: list[float] = []
    start_cpu = cpu_seconds()
    deadline = time.perf_counter() + seconds
    while (begin := time.perf_counter()) < deadline:
        ours.send_bytes(payload)
        ours.recv_bytes()
        latencies.append(time.perf_counter() - begin)
    frontend_cpu = cpu_seconds() - start_cpu
    ours.send_bytes(b"")
    engine_cpu = ours.recv()
    engine.join()
    return latencies, frontend_cpu, engine_cpu


# --- unix socket, with or without shared memory ----------------------------------------------


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (length,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
    return await reader.readexactly(length)


def _frame(header: bytes, body: memoryview | bytes = b"") -> bytes:
    return LENGTH.pack(len(header) + memoryview(body).nbytes) + header + body


def socket_engine(path: str, arena_name: str | None, report: Connection) -> None:
    import uvloop

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        arena = shared_memory.SharedMemory(arena_name) if arena_name else None
        try:
            while True:
                frame = await _read_frame(reader)
                if not frame:
                    break
                _, slot, elements = HEADER.unpack_from(frame)
                if arena is None:
                    answer = np.frombuffer(frame, np.float32, elements, HEADER.size).copy()
                    writer.write(_frame(frame[: HEADER.size], answer.data))
                else:
                    size = elements * 4
                    view = np.frombuffer(arena.buf, np.float32, elements, slot * size)
                    view[:] = view  # stands for the model writing its answer into the slot
                    del view
                    writer.write(_frame(frame[: HEADER.size]))
        except asyncio.IncompleteReadError:
            pass
        finally:
            if arena is not None:
                arena.close()
            writer.close()
            done.set()

    async def run() -> None:
        start = cpu_seconds()
        server = await asyncio.start_unix_server(serve, path)
        report.send("listening")
        await done.wait()
        server.close()
        report.send(cpu_seconds() - start)

    done = asyncio.Event()
    uvloop.run(run())


async def _socket_client(
    path: str,
    arena: shared_memory.SharedMemory | None,
    elements: int,
    concurrency: int,
    seconds: float,
) -> list[float]:
    reader, writer = await asyncio.open_unix_connection(path)
    waiting: dict[int, asyncio.Future[bytes]] = {}
    payload = np.ones(elements, np.float32)

    async def receive() -> None:
        try:
            while True:
                frame = await _read_frame(reader)
                (request_id,) = struct.unpack_from("<q", frame)
                waiting.pop(request_id).set_result(frame)
        except asyncio.IncompleteReadError:
            pass

    async def caller(slot: int) -> list[float]:
        latencies = []
        request_id = slot
        deadline = time.perf_counter() + seconds
        while (begin := time.perf_counter()) < deadline:
            future = asyncio.get_running_loop().create_future()
            waiting[request_id] = future
            if arena is None:
                writer.write(_frame(HEADER.pack(request_id, -1, elements), payload.data))
            else:
                start = slot * elements * 4
                arena.buf[start : start + payload.nbytes] = payload.data.cast("B")
                writer.write(_frame(HEADER.pack(request_id, slot, elements)))
            await future
            latencies.append(time.perf_counter() - begin)
            request_id += concurrency
        return latencies

    receiving = asyncio.create_task(receive())
    results = await asyncio.gather(*(caller(slot) for slot in range(concurrency)))
    writer.write(LENGTH.pack(0))
    await writer.drain()
    writer.close()
    await receiving
    return [latency for latencies in results for latency in latencies]


def socket_frontend(
    elements: int, concurrency: int, seconds: float, shared: bool
) -> tuple[list[float], float, float]:
    import uvloop

    path = f"/tmp/inferd-ipc-{os.getpid()}.sock"
    arena = (
        shared_memory.SharedMemory(create=True, size=concurrency * elements * 4) if shared else None
    )
    ours, theirs = multiprocessing.Pipe()
    engine = multiprocessing.Process(
        target=socket_engine, args=(path, arena.name if arena else None, theirs)
    )
    engine.start()
    ours.recv()
    try:
        start_cpu = cpu_seconds()
        latencies = uvloop.run(_socket_client(path, arena, elements, concurrency, seconds))
        frontend_cpu = cpu_seconds() - start_cpu
        engine_cpu = ours.recv()
    finally:
        engine.join()
        os.unlink(path)
        if arena is not None:
            arena.close()
            arena.unlink()
    return latencies, frontend_cpu, engine_cpu


def _row(
    label: str, concurrency: int, result: tuple[list[float], float, float], seconds: float
) -> str:
    latencies, frontend_cpu, engine_cpu = result
    count = len(latencies)
    p50, p99 = np.percentile(latencies, [50, 99]) * 1e6
    return (
        f"{label:<30} {concurrency:>3} {count / seconds:10,.0f} {p50:8.1f} {p99:8.1f} "
        f"{frontend_cpu / count * 1e6:9.1f} {engine_cpu / count * 1e6:9.1f}"
    )


# --- inferd's worker process, a decoupled model ----------------------------------------------

# IN = [count, elements]: `count` responses of `elements` FP32 each, the last one final.
STREAMER = """
import numpy as np

class InferdModel:
    def execute(self, batch):
        request = batch.requests[0]
        count, elements = (int(v) for v in request.inputs["IN"])
        out = np.ones(elements, np.float32)
        for index in range(count):
            request.sender.send({"OUT": out}, final=index == count - 1)
"""


def _isolated_streamer(folder: Path) -> object:
    # Imported here: the sections above need no inferd.
    from inferd.backends.python.api import ModelContext
    from inferd.backends.python.isolated import IsolatedInstance
    from inferd.backends.python.protocol import WorkerSetup

    model_file = folder / "1" / "model.py"
    model_file.parent.mkdir(parents=True)
    model_file.write_text(STREAMER)
    context = ModelContext(
        "streamer", 1, folder, model_file.parent, {}, {}, "streamer_0", "cpu", "cpu", 0
    )
    setup = WorkerSetup(model_file, "bench_streamer", context, {"OUT": "FP32"}, False, True)
    return IsolatedInstance(setup, None, 1)


async def _one_request(instance: object, count: int, elements: int) -> list[float]:
    """The times (perf_counter) at which each response of one request reached the server."""
    from inferd.backends.base import BatchRequest
    from inferd.core.responses import ResponseChannel

    channel = ResponseChannel()
    request = BatchRequest(0, 1, responses=channel)
    inputs = {"IN": np.array([count, elements], np.int64)}
    execute = asyncio.to_thread(instance.execute, inputs, ["OUT"], [request])  # type: ignore[attr-defined]
    running = asyncio.ensure_future(execute)
    times = []
    while True:
        item = await channel.get()
        times.append(time.perf_counter())
        if item.final:
            break
    await running
    return times


async def _worker_rows(elements: int, responses: int, seconds: float) -> tuple[str, str]:
    with tempfile.TemporaryDirectory() as folder:
        instance = _isolated_streamer(Path(folder))
        try:
            await _one_request(instance, 2, elements)  # warm
            trips: list[float] = []
            deadline = time.perf_counter() + seconds
            while (begin := time.perf_counter()) < deadline:
                (end,) = await _one_request(instance, 1, elements)
                trips.append(end - begin)
            per_response: list[float] = []
            worker = instance.pid  # type: ignore[attr-defined]
            cpu = (cpu_seconds(), _process_cpu_seconds(worker))
            deadline = time.perf_counter() + seconds
            while (begin := time.perf_counter()) < deadline:
                times = await _one_request(instance, responses, elements)
                per_response.append((times[-1] - begin) / responses)
            sent = len(per_response) * responses
            server_cpu = (cpu_seconds() - cpu[0]) / sent * 1e6
            worker_cpu = (_process_cpu_seconds(worker) - cpu[1]) / sent * 1e6
        finally:
            instance.close()  # type: ignore[attr-defined]
    size = f"{elements * 4:,} B"
    p50, p99 = np.percentile(trips, [50, 99]) * 1e6
    one = f"{size:>12} {'1 response':>14} {len(trips) / seconds:10,.0f} {p50:9.1f} {p99:9.1f}"
    s50, s99 = np.percentile(per_response, [50, 99]) * 1e6
    rate = 1e6 / s50
    streamed = f"{size:>12} {f'{responses} streamed':>14} {rate:10,.0f} {s50:9.1f} {s99:9.1f}"
    return one, f"{streamed} {server_cpu:9.1f} {worker_cpu:9.1f}"


def _process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_section(sizes: list[int], responses: int, seconds: float) -> None:
    print("\ninferd worker process, decoupled model (IsolatedInstance, no frontend)")
    heading = f"{'response':>12} {'request':>14} {'resp/s':>10} {'p50 µs':>9} {'p99 µs':>9}"
    print(f"{heading} {'server µs':>9} {'worker µs':>9}")
    print("(p50/p99: the round trip, or a streamed request's wall µs per response; CPU µs per")
    print(" streamed response of the server's process and of the worker)")
    for nbytes in sizes:
        for row in asyncio.run(_worker_rows(max(1, nbytes // 4), responses, seconds)):
            print(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--elements", type=int, default=256, help="FP32 elements per tensor")
    parser.add_argument("--stream-bytes", type=int, nargs="+", default=[1 << 10, 1 << 20])
    parser.add_argument("--stream-responses", type=int, default=64)
    parser.add_argument("--worker-only", action="store_true")
    args = parser.parse_args()
    if not args.worker_only:
        socket_section(args)
    worker_section(args.stream_bytes, args.stream_responses, args.seconds)


def socket_section(args: argparse.Namespace) -> None:
    print(f"tensor: {args.elements} FP32 ({args.elements * 4} bytes) each way")
    heading = f"{'path':<30} {'c':>3} {'trips/s':>10} {'p50 µs':>8} {'p99 µs':>8}"
    print(f"{heading} {'front µs':>9} {'engine µs':>9}   (CPU per round trip)")
    print(_row("pipe, in-band", 1, pipe_frontend(args.elements, args.seconds), args.seconds))
    for concurrency in args.concurrency:
        for label, shared in (
            ("unix socket, in-band", False),
            ("unix socket + shared memory", True),
        ):
            result = socket_frontend(args.elements, concurrency, args.seconds, shared)
            print(_row(label, concurrency, result, args.seconds))


if __name__ == "__main__":
    main()
