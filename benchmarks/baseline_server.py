"""A bare-bones KServe V2 endpoint: the floor a Python server's request path is measured against.

    python benchmarks/baseline_server.py MODEL.onnx --port 8000 [--max-batch 16] [--delay-us 500]

Raw ASGI on uvicorn (httptools, uvloop), binary tensors only, one model named `mlp` with one
FP32 input and one FP32 output, and a greedy batcher: one thread takes the first waiting request,
gathers more for up to `--delay-us` or until `--max-batch` rows, and runs ONNX Runtime (one
intra-op thread) on the lot. No validation, statistics, metrics or logging: what is left is the
work no server can avoid. `--max-batch 1` turns batching off.

It answers just enough of the protocol for `perf_analyzer`: server and model metadata, the model
config, readiness, and `POST /v2/models/mlp/infer` with binary input and output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import onnxruntime as ort
import uvicorn

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MODEL = "mlp"
HEADER_LENGTH = b"inference-header-content-length"


class GreedyBatcher:
    """One thread running the model on whatever arrived within `delay_s` of the first request."""

    def __init__(self, session: ort.InferenceSession, max_batch: int, delay_s: float) -> None:
        self._session = session
        self._input = session.get_inputs()[0].name
        self._output = session.get_outputs()[0].name
        self._max_batch = max_batch
        self._delay_s = delay_s
        self._waiting: queue.SimpleQueue[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = (
            queue.SimpleQueue()
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        threading.Thread(target=self._run, daemon=True).start()

    def submit(self, rows: np.ndarray) -> asyncio.Future[np.ndarray]:
        loop = asyncio.get_running_loop()
        self._loop = loop
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._waiting.put((rows, future))
        return future

    def _gather(self) -> list[tuple[np.ndarray, asyncio.Future[np.ndarray]]]:
        batch = [self._waiting.get()]
        rows = len(batch[0][0])
        deadline = time.perf_counter() + self._delay_s
        while rows < self._max_batch:
            left = deadline - time.perf_counter()
            try:
                item = self._waiting.get(timeout=left) if left > 0 else self._waiting.get_nowait()
            except queue.Empty:
                break
            batch.append(item)
            rows += len(item[0])
        return batch

    def _run(self) -> None:
        while True:
            batch = self._gather()
            assert self._loop is not None
            # A batch the model refuses (rows of another width) fails its own requests; an
            # exception left to end this thread would leave every later request waiting forever.
            try:
                inputs = batch[0][0] if len(batch) == 1 else np.concatenate([b[0] for b in batch])
                (outputs,) = self._session.run([self._output], {self._input: inputs})
            except Exception as error:
                self._loop.call_soon_threadsafe(_fail, batch, error)
                continue
            self._loop.call_soon_threadsafe(_resolve, batch, outputs)


def _resolve(batch: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]], outputs: Any) -> None:
    start = 0
    for rows, future in batch:
        end = start + len(rows)
        # A future already done (its request cancelled) must not stop the loop before the
        # batch's other futures are answered. `try` costs nothing where nothing is raised
        # (contextlib.suppress would cost a call per request).
        try:  # noqa: SIM105
            future.set_result(outputs[start:end])
        except asyncio.InvalidStateError:
            pass
        start = end


def _fail(batch: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]], error: Exception) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)


def _json_body(document: object) -> bytes:
    return json.dumps(document).encode()


class BaselineApp:
    """The ASGI application: fixed answers for metadata, the batcher for `infer`."""

    def __init__(self, session: ort.InferenceSession, max_batch: int, delay_us: int) -> None:
        self._batcher = GreedyBatcher(session, max_batch, delay_us / 1e6)
        model_input, model_output = session.get_inputs()[0], session.get_outputs()[0]
        self._width = int(model_input.shape[1])
        self._output_name = model_output.name
        inputs = [{"name": model_input.name, "datatype": "FP32", "shape": [-1, self._width]}]
        outputs = [
            {"name": model_output.name, "datatype": "FP32", "shape": list(model_output.shape)}
        ]
        outputs[0]["shape"][0] = -1
        config: dict[str, Any] = {
            "name": MODEL,
            "platform": "onnxruntime_onnx",
            "max_batch_size": max_batch,
            "input": [{"name": model_input.name, "data_type": "TYPE_FP32", "dims": [self._width]}],
            "output": [
                {
                    "name": model_output.name,
                    "data_type": "TYPE_FP32",
                    "dims": outputs[0]["shape"][1:],
                }
            ],
        }
        if max_batch > 1:
            config["dynamic_batching"] = {"max_queue_delay_microseconds": delay_us}
        metadata = {"name": MODEL, "versions": ["1"], "platform": "onnxruntime_onnx"}
        self._fixed = {
            "/v2": _json_body({"name": "baseline", "version": "0", "extensions": []}),
            "/v2/health/live": b"",
            "/v2/health/ready": b"",
            f"/v2/models/{MODEL}": _json_body({**metadata, "inputs": inputs, "outputs": outputs}),
            f"/v2/models/{MODEL}/ready": b"",
            f"/v2/models/{MODEL}/config": _json_body(config),
        }
        self._infer_path = f"/v2/models/{MODEL}/infer"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        path = scope["path"]
        if path == self._infer_path:
            await self._infer(scope, receive, send)
            return
        body = self._fixed.get(path)
        if body is None:
            await _answer(send, 404, _json_body({"error": "not found"}))
        else:
            await _answer(send, 200, body)

    async def _infer(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        header_length = next(int(v) for k, v in scope["headers"] if k == HEADER_LENGTH)
        header = json.loads(body[:header_length])
        shape = header["inputs"][0]["shape"]
        rows = np.frombuffer(body, np.float32, offset=header_length).reshape(shape)
        outputs = await self._batcher.submit(rows)
        data = outputs.tobytes()
        answer = _json_body(
            {
                "model_name": MODEL,
                "model_version": "1",
                "outputs": [
                    {
                        "name": self._output_name,
                        "datatype": "FP32",
                        "shape": list(outputs.shape),
                        "parameters": {"binary_data_size": len(data)},
                    }
                ],
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/octet-stream"),
                    (HEADER_LENGTH, str(len(answer)).encode()),
                    (b"content-length", str(len(answer) + len(data)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer + data})


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body
    parts = [body]
    while message.get("more_body"):
        message = await receive()
        parts.append(message.get("body", b""))
    return b"".join(parts)


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an ONNX model with one FP32 input [-1, N] and one output")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch", type=int, default=16, help="1 turns batching off")
    parser.add_argument("--delay-us", type=int, default=500)
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    app = BaselineApp(session, args.max_batch, args.delay_us)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
