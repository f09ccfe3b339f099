"""Continuous batching of a generative stand-in model: iterative sequences vs one request per
execution vs static batches, over gRPC streaming or generate_stream (SSE).

    python benchmarks/streaming.py [--streams 64] [--rounds 2] [--min-steps 16] [--max-steps 256]

The model is a decoupled Python model whose step costs a fixed amount of numpy work per batch
(`--layers` passes of `--width`-square weights over a fixed probe, as a decode step on an
accelerator is bound by reading its weights, plus a small product per row: so batching helps)
and sends one token per request per step. Three setups of the same code, each served alone,
one instance, BLAS on one thread:

- iterative: `sequence_batching { iterative_sequence: true }`, `max_batch_size` = streams;
  one step per execution, each request handed back (`reschedule()`) until its last token,
  new requests joining the running batch between steps;
- one per execution: no batching; an execution runs every step of its one request;
- static batches: `dynamic_batching` (up to `streams` requests, 5 ms delay); an execution
  runs every request of its batch until the longest one ends (all rows computed throughout).

`--streams` clients each send `--rounds` requests back to back, of lengths drawn uniformly
from [min, max] steps (the same draw for every setup), on one gRPC stream (`--client sse`:
each stream on a keep-alive HTTP/1.1 connection of its own, as `generate_stream`). Two rounds
by default, so that requests also arrive while others run, as they do in service: with one
round every request arrives in the first burst, one static batch takes them all at once, and
nothing is left for continuous batching to schedule around. Printed:
time to first token (TTFT) and inter-token latency p50/p99, tokens/s; the model's raw step
time at batch 1 and at the mean running batch of the iterative setup, measured here in the
same run, and the iterative tokens/s as a ratio of the raw batched step rate (tokens per
second a loop of raw steps at that batch size makes); and the server's CPU time per token
(model steps included), which a loaded machine disturbs less than rates, that of its
event-loop thread alone (the frontend and the scheduler, without the model's steps), of its
instance's thread (the model's steps) and of the client (this process); and the iterative
setup's period per step beside the time its instance's thread ran in it and waited for a core
(Linux schedstat). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import itertools
import os

# One BLAS thread, here (for the raw step times) and in the server: set before numpy loads.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import queue  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from common import served  # noqa: E402
from http2_stream import Http2Calls  # noqa: E402
from sse_stream import SseStreams  # noqa: E402

MODEL = """\
import numpy as np

WIDTH = {width}
LAYERS = {layers}
STATE = 16  # each request's hidden state
_rng = np.random.default_rng(0)
WEIGHTS = _rng.standard_normal((WIDTH, WIDTH), np.float32) / WIDTH**0.5
PROBE = _rng.standard_normal((WIDTH, STATE), np.float32)


def step(hidden):
    # One decoding step of a batch of hidden states [rows, STATE]: a fixed cost per step
    # (passes over the weights, as a decode step on an accelerator is bound by reading them)
    # and a small cost per row.
    mixer = PROBE
    for _ in range(LAYERS):
        mixer = np.tanh(WEIGHTS @ mixer)
    return np.tanh(hidden @ mixer[:STATE] / STATE**0.5 + 0.1)


class InferdModel:
    def initialize(self, context):
        self.whole = context.parameters["mode"] == "whole"
        # Per running request, by sequence id: its hidden state, tokens made, length asked for
        self.running = {{}}

    def execute(self, batch):
        if self.whole:
            self.run_to_the_end(batch.requests)
        else:
            self.one_step(batch.requests)

    def one_step(self, requests):
        keys = [request.parameters["sequence_id"] for request in requests]
        states = []
        for request, key in zip(requests, keys):
            if request.parameters["sequence_start"]:  # its length is read once, at its start
                length = int(request.inputs["LENGTH"].reshape(-1)[0])
                states.append((np.full(STATE, length / 256, np.float32), 0, length))
            else:
                states.append(self.running.pop(key))
        hidden = step(np.stack([state for state, _, _ in states]))
        tokens = tokens_of(hidden)
        for request, key, row, token, (_, made, length) in zip(
            requests, keys, hidden, tokens, states
        ):
            if made + 1 < length:
                self.running[key] = (row, made + 1, length)
                request.reschedule()
                request.sender.send({{"TOKEN": token}})
            else:
                request.sender.send({{"TOKEN": token}}, final=True)

    def run_to_the_end(self, requests):
        lengths = [int(r.inputs["LENGTH"].reshape(-1)[0]) for r in requests]
        hidden = np.stack([np.full(STATE, n / 256, np.float32) for n in lengths])
        for made in range(max(lengths)):
            hidden = step(hidden)
            tokens = tokens_of(hidden)
            for request, token, length in zip(requests, tokens, lengths):
                if made < length:
                    request.sender.send({{"TOKEN": token}}, final=made + 1 == length)


def tokens_of(hidden):
    # Every row's token at once: one int32 array [rows, 1], each row's a view of it.
    return hidden.argmax(axis=1).astype(np.int32).reshape(-1, 1)
"""

CONFIG = """\
name: "{name}"
backend: "python"
max_batch_size: {max_batch_size}
model_transaction_policy {{ decoupled: true }}
input [ {{ name: "LENGTH", data_type: TYPE_INT32, dims: [ 1 ] }} ]
output [ {{ name: "TOKEN", data_type: TYPE_INT32, dims: [ 1 ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
parameters [ {{ key: "mode", value: {{ string_value: "{mode}" }} }} ]
{scheduling}
"""

SETUPS = {
    "iterative": ("step", "sequence_batching { iterative_sequence: true }", True),
    "one per execution": ("whole", "", False),
    "static batches": ("whole", "dynamic_batching { max_queue_delay_microseconds: 5000 }", True),
}


@dataclass
class Tracked:
    sent: float
    lengths: list[int]
    tokens: list[float] = field(default_factory=list)


class Progress:
    """How far each stream of `plans` is: the requests sent, their tokens' arrival times, and
    the streams not yet finished; the bookkeeping every client shares."""

    def __init__(self, plans: list[list[int]]) -> None:
        self.plans = plans
        self.tracked: dict[str, Tracked] = {}
        self.cursor = [0] * len(plans)
        self.unfinished = len(plans)

    def start(self, stream: int) -> tuple[str, int]:
        """The id and length of `stream`'s next request, tracked from now."""
        length = self.plans[stream][self.cursor[stream]]
        request_id = f"{stream}-{self.cursor[stream]}"
        self.tracked[request_id] = Tracked(time.perf_counter(), [length])
        return request_id, length

    def answered(self, request_id: str, now: float) -> int | None:
        """Stamps a token of `request_id`; where it was the request's last, returns the stream
        whose next request is due (None where that stream has no more: it is finished)."""
        request = self.tracked[request_id]
        request.tokens.append(now)
        if len(request.tokens) < request.lengths[0]:
            return None
        stream = int(request_id.split("-")[0])
        self.cursor[stream] += 1
        if self.cursor[stream] < len(self.plans[stream]):
            return stream
        self.unfinished -= 1
        return None

    def requests(self) -> list[Tracked]:
        return list(self.tracked.values())


def drive_tritonclient(url: str, model: str, plans: list[list[int]]) -> tuple[list[Tracked], float]:
    """Each stream of `plans` sends its requests back to back on one tritonclient gRPC stream
    (its callback thread); returns every request's token arrival times and the wall time."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    done: queue.Queue[Exception | None] = queue.Queue()
    progress = Progress(plans)
    lock = threading.Lock()

    def send(stream: int) -> None:
        request_id, length = progress.start(stream)
        tensor = grpcclient.InferInput("LENGTH", [1, 1] if batched else [1], "INT32")
        tensor.set_data_from_numpy(np.full([1, 1] if batched else [1], length, np.int32))
        client.async_stream_infer(model, [tensor], request_id=request_id)

    def callback(result: Any, error: Any) -> None:
        if error is not None:
            done.put(error)
            return
        now = time.perf_counter()
        with lock:
            stream = progress.answered(result.get_response().id, now)
            if stream is not None:
                send(stream)
            elif not progress.unfinished:
                done.put(None)

    batched = model != "one"
    client.start_stream(callback=callback)
    start = time.perf_counter()
    with lock:
        for stream in range(len(plans)):
            send(stream)
    error = done.get(timeout=3600)
    if error is not None:
        raise RuntimeError(f"a request failed: {error}")
    wall = time.perf_counter() - start
    client.stop_stream()
    client.close()
    return progress.requests(), wall


def _request(model: str, request_id: str, length: int) -> Any:
    """The ModelInferRequest of one stream request, with tritonclient's generated messages."""
    from tritonclient.grpc import service_pb2 as pb

    tensor = pb.ModelInferRequest.InferInputTensor(
        name="LENGTH", datatype="INT32", shape=[1] if model == "one" else [1, 1]
    )
    return pb.ModelInferRequest(
        model_name=model,
        id=request_id,
        inputs=[tensor],
        raw_input_contents=[np.array([length], np.int32).tobytes()],
    )


def drive_grpc(url: str, model: str, plans: list[list[int]]) -> tuple[list[Tracked], float]:
    """As `drive_tritonclient`, with a leaner client: grpc and tritonclient's generated stubs
    on one bidirectional stream, each response read on this thread as it arrives (so a token
    costs this process a protobuf parse and grpc's hand-over, not a callback's work)."""
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    progress = Progress(plans)
    outgoing: queue.SimpleQueue[Any] = queue.SimpleQueue()  # None: no more requests

    def send(stream: int) -> None:
        outgoing.put(_request(model, *progress.start(stream)))

    with grpc.insecure_channel(url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        responses = stub.ModelStreamInfer(iter(outgoing.get, None))
        start = time.perf_counter()
        for stream in range(len(plans)):
            send(stream)
        for response in responses:
            now = time.perf_counter()
            if response.error_message:
                raise RuntimeError(f"a request failed: {response.error_message}")
            stream = progress.answered(response.infer_response.id, now)
            if stream is not None:
                send(stream)
            elif not progress.unfinished:
                break
        wall = time.perf_counter() - start
        outgoing.put(None)
        if progress.unfinished:
            raise RuntimeError("the server ended the stream early")
    return progress.requests(), wall


def drive_http2(
    url: str, model: str, plans: list[list[int]], calls: int = 1
) -> tuple[list[Tracked], float]:
    """As `drive_tritonclient`, with the leanest client: `ModelStreamInfer` spoken over a plain
    socket (`Http2Calls`), as a client in a compiled language costs next to nothing per
    token; every response of a read is stamped with the time of that read. With `calls` > 1,
    stream s sends on call s % calls (all on one connection)."""
    from tritonclient.grpc import service_pb2 as pb

    progress = Progress(plans)
    parse = pb.ModelStreamInferResponse.FromString

    def request(stream: int) -> bytes:
        return bytes(_request(model, *progress.start(stream)).SerializeToString())

    path = "/inference.GRPCInferenceService/ModelStreamInfer"
    with Http2Calls(url, path, calls) as connection:
        start = time.perf_counter()
        for stream in range(len(plans)):
            connection.send(stream % calls, [request(stream)])
        while progress.unfinished:
            messages = connection.receive()
            now = time.perf_counter()
            for _, message in messages:
                response = parse(message)
                if response.error_message:
                    raise RuntimeError(f"a request failed: {response.error_message}")
                stream = progress.answered(response.infer_response.id, now)
                if stream is not None:
                    connection.send(stream % calls, [request(stream)])
        wall = time.perf_counter() - start
    return progress.requests(), wall


def drive_sse(url: str, model: str, plans: list[list[int]]) -> tuple[list[Tracked], float]:
    """As `drive_http2`, over HTTP/1.1 instead (`url` is the HTTP port's): each stream sends
    its requests as `generate_stream`, back to back on a keep-alive connection of its own
    (`SseStreams`), the next once the answer before it has ended; every event of a read is
    stamped with the time of that read."""
    import orjson

    progress = Progress(plans)
    asked = [""] * len(plans)  # by stream, the id of its request in flight
    due: set[int] = set()  # the streams whose next request goes when their answer ends

    def send(stream: int) -> None:
        request_id, length = progress.start(stream)
        asked[stream] = request_id
        connections.send(stream, orjson.dumps({"LENGTH": length, "id": request_id}))

    with SseStreams(url, f"/v2/models/{model}/generate_stream", len(plans)) as connections:
        start = time.perf_counter()
        for stream in range(len(plans)):
            send(stream)
        while progress.unfinished:
            events = connections.receive()
            now = time.perf_counter()
            for stream, event in events:
                if event is None:  # its answer ended
                    request = progress.tracked[asked[stream]]
                    if len(request.tokens) < request.lengths[0]:
                        raise RuntimeError("the server ended an answer early")
                    if stream in due:
                        due.remove(stream)
                        send(stream)
                    else:  # its last
                        connections.close(stream)
                    continue
                response = orjson.loads(event)
                if "error" in response or response["id"] != asked[stream]:
                    raise RuntimeError(f"a request failed: {response}")
                if progress.answered(asked[stream], now) is not None:
                    due.add(stream)
        wall = time.perf_counter() - start
    return progress.requests(), wall


CLIENTS = {
    "http2": drive_http2,
    # One gRPC call per stream, as `--streams` clients of their own would open
    "http2-calls": lambda url, model, plans: drive_http2(url, model, plans, len(plans)),
    "grpc": drive_grpc,
    "tritonclient": drive_tritonclient,
    "sse": drive_sse,
}


def summary(label: str, requests: list[Tracked], wall: float) -> tuple[float, float, float]:
    ttft = [(r.tokens[0] - r.sent) * 1000 for r in requests]
    gaps = [(b - a) * 1000 for r in requests for a, b in itertools.pairwise(r.tokens)]
    tokens = sum(len(r.tokens) for r in requests)
    rate = tokens / wall
    p = np.percentile
    print(
        f"{label:<20} {p(ttft, 50):9.1f} {p(ttft, 99):9.1f} {p(gaps, 50):8.2f} "
        f"{p(gaps, 99):8.2f} {rate:10.0f}"
    )
    return rate, float(p(ttft, 99)), wall


def mean_running_batch(http_url: str, model: str) -> float:
    import json

    with urllib.request.urlopen(f"http://{http_url}/v2/models/{model}/stats") as answer:
        stats = json.load(answer)["model_stats"][0]
    return int(stats["inference_count"]) / max(1, int(stats["execution_count"]))


def server_cpu_seconds(pid: int) -> tuple[float, dict[int, tuple[float, float]]]:
    """CPU time the server process used so far (Linux), all of it; and for each live thread,
    by thread id, the seconds it ran and the seconds it waited for a core while runnable
    (its main thread is the event loop: the frontends and schedulers; the busiest other one
    the model instance's, running the model's steps)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            ran, waited = (int(ns) / 1e9 for ns in (task / "schedstat").read_text().split()[:2])
        except OSError:  # the thread ended meanwhile
            continue
        threads[int(task.name)] = (ran, waited)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), threads


def threads_since(
    before: dict[int, tuple[float, float]], after: dict[int, tuple[float, float]]
) -> dict[int, tuple[float, float]]:
    """Each thread's seconds run and waited for a core between two `server_cpu_seconds`."""
    spent = {}
    for thread, (ran, waited) in after.items():
        ran_before, waited_before = before.get(thread, (0.0, 0.0))
        spent[thread] = (ran - ran_before, waited - waited_before)
    return spent


def raw_step_ms(namespace: dict[str, Any], rows: int, seconds: float = 1.0) -> float:
    hidden = np.ones((rows, namespace["STATE"]), np.float32)
    step = namespace["step"]
    for _ in range(5):
        step(hidden)
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        step(hidden)
        count += 1
    return (time.perf_counter() - start) / count * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--min-steps", type=int, default=16)
    parser.add_argument("--max-steps", type=int, default=256)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--only", nargs="*", choices=list(SETUPS), default=list(SETUPS))
    parser.add_argument(
        "--client",
        choices=list(CLIENTS),
        default="http2",
        help="http2: gRPC spoken over a plain socket, next to no client CPU per token, every "
        "stream's requests on one call, as with the others; http2-calls: the same, one call "
        "per stream (so the server writes the calls' responses side by side); grpc: "
        "grpc's own Python client with tritonclient's stubs; tritonclient: its stream "
        "callbacks (the grpc clients cost about 100 us of CPU per token, on the same cores); "
        "sse: each stream's requests as generate_stream (server-sent events) on a keep-alive "
        "HTTP/1.1 connection of its own, read as leanly as http2's",
    )
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    plans = [
        [int(n) for n in rng.integers(args.min_steps, args.max_steps + 1, args.rounds)]
        for _ in range(args.streams)
    ]
    code = MODEL.format(width=args.width, layers=args.layers)
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # the model's own step function, timed raw below
    print(
        f"{args.streams} streams x {args.rounds} requests of {args.min_steps}-{args.max_steps} "
        f"steps; step = {args.layers} x [{args.width}, {args.width}] @ [{args.width}, 16] "
        f"per step + [rows, 16] @ [16, 16]; client: {args.client}"
    )
    print(
        f"{'':<20} {'TTFT p50':>9} {'TTFT p99':>9} {'ITL p50':>8} {'ITL p99':>8} {'tokens/s':>10}"
    )
    print(f"{'':<20} {'ms':>9} {'ms':>9} {'ms':>8} {'ms':>8}")
    rates: dict[str, tuple[float, float, float]] = {}
    # Seconds per token: the whole server's CPU time, its event loop's, its instance thread's,
    # the client's, and the time the instance's thread waited for a core
    served_cpu: dict[str, tuple[float, float, float, float, float]] = {}
    running = 0.0
    for label in args.only:
        mode, scheduling, batched = SETUPS[label]
        name = label.split()[0]
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / name
            (folder / "1").mkdir(parents=True)
            (folder / "1" / "model.py").write_text(code)
            size = args.streams if batched else 0
            (folder / "config.pbtxt").write_text(
                CONFIG.format(name=name, max_batch_size=size, mode=mode, scheduling=scheduling)
            )
            with served(Path(tmp)) as server:
                pid = server.process.pid
                before, client_before = server_cpu_seconds(pid), time.process_time()
                url = server.http_url if args.client == "sse" else server.grpc_url
                requests, wall = CLIENTS[args.client](url, name, plans)
                after, client_after = server_cpu_seconds(pid), time.process_time()
                rates[label] = summary(label, requests, wall)
                tokens = sum(len(r.tokens) for r in requests)
                spent = threads_since(before[1], after[1])
                instance = max(times for thread, times in spent.items() if thread != pid)
                served_cpu[label] = (
                    (after[0] - before[0]) / tokens,
                    spent[pid][0] / tokens,
                    instance[0] / tokens,
                    (client_after - client_before) / tokens,
                    instance[1] / tokens,
                )
                if label == "iterative":
                    running = mean_running_batch(server.http_url, name)
    print()
    for label, (seconds, loop, instance, client, _) in served_cpu.items():
        print(
            f"CPU per token, {label}: server {seconds * 1e6:.0f} us (event-loop thread "
            f"{loop * 1e6:.0f} us, instance thread {instance * 1e6:.0f} us), "
            f"client {client * 1e6:.0f} us"
        )
    one = raw_step_ms(namespace, 1)
    print(f"\nraw step at batch 1: {one:.3f} ms ({1000 / one:.0f} tokens/s)")
    if "iterative" in rates and running:
        rows = max(1, round(running))
        batched_ms = raw_step_ms(namespace, rows)
        raw_rate = rows / batched_ms * 1000
        served_rate = rates["iterative"][0]
        print(
            f"raw step at the mean running batch ({running:.1f} -> {rows} rows): "
            f"{batched_ms:.3f} ms ({raw_rate:.0f} tokens/s)"
        )
        print(f"iterative tokens/s / raw batched step rate: {served_rate / raw_rate:.2f}")
        _, _, ran, _, waited = (seconds * running * 1000 for seconds in served_cpu["iterative"])
        print(
            f"served period per step: {running / served_rate * 1000:.3f} ms, of which the "
            f"instance thread ran {ran:.3f} ms (its step) and waited {waited:.3f} ms for a core"
        )
        if "one per execution" in rates:
            print(
                f"iterative / one per execution: {served_rate / rates['one per execution'][0]:.2f}x"
            )
        if "static batches" in rates:
            print(
                f"TTFT p99 iterative {rates['iterative'][1]:.1f} ms vs static batches "
                f"{rates['static batches'][1]:.1f} ms"
            )


if __name__ == "__main__":
    main()
