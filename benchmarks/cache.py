"""The response cache on the example MLP (256->1024->1024->256 FP32): throughput and latency
with and without the cache, at 0 %, 50 % and 95 % repeated inputs, and what a lookup costs.

    python benchmarks/cache.py [--seconds 3] [--concurrency 4]

One server holds the MLP twice, `mlp` and `mlp_cached` (`response_cache { enable: true }`,
server started with `--cache-config local,size=64MiB`). Clients are tritonclient.grpc in
`--concurrency` processes, each sending batch-1 requests back to back; a repeated request is
one of 16 inputs shared by every client, the others are fresh random inputs. The lookup cost
is read two ways: the server's own `cache_hit` / `cache_miss` statistics (lookup, and lookup
plus insertion, per request), and the key and LRU in this process on the same request.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from common import HEADER, Figures, load_from_processes, served, write_mlp_repository
from inferd.core.types import InferRequest
from inferd.engine.response_cache import ResponseCache, cache_key

WIDTH = 256
HOT_INPUTS = 16
CACHE_BYTES = 64 * 1024 * 1024
CONFIG = """\
name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ {{ name: "input", data_type: TYPE_FP32, dims: [ {width} ] }} ]
output [ {{ name: "output", data_type: TYPE_FP32, dims: [ {width} ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
parameters {{ key: "intra_op_thread_count" value {{ string_value: "1" }} }}
{extra}
"""


def write_repository(root: Path) -> Path:
    model = write_mlp_repository(root, CONFIG.format(name="mlp", width=WIDTH, extra=""))
    cached = root / "mlp_cached" / "1"
    cached.mkdir(parents=True)
    (cached / "model.onnx").write_bytes(model.read_bytes())
    extra = "response_cache { enable: true }"
    config = CONFIG.format(name="mlp_cached", width=WIDTH, extra=extra)
    (root / "mlp_cached" / "config.pbtxt").write_text(config)
    return root


def caller(url: str, model: str, repeated: float) -> Callable[[], Callable[[], object]]:
    """What each client process makes: a call sending a repeated input `repeated` of the time."""
    hot = np.random.default_rng(0).standard_normal((HOT_INPUTS, 1, WIDTH)).astype(np.float32)

    def make() -> Callable[[], object]:
        client = grpcclient.InferenceServerClient(url)
        rng = np.random.default_rng()

        def call() -> object:
            if rng.random() < repeated:
                data = hot[rng.integers(HOT_INPUTS)]
            else:
                data = rng.standard_normal((1, WIDTH), dtype=np.float32)
            tensor = grpcclient.InferInput("input", [1, WIDTH], "FP32")
            tensor.set_data_from_numpy(data)
            return client.infer(model, [tensor])

        return call

    return make


def server_lookup_us(url: str) -> tuple[float, float]:
    """(mean µs of a hit's lookup, of a miss's lookup and insertion) from the statistics."""
    client = grpcclient.InferenceServerClient(url)
    (stats,) = client.get_inference_statistics("mlp_cached", "1").model_stats
    client.close()
    hit, miss = stats.inference_stats.cache_hit, stats.inference_stats.cache_miss
    return (hit.ns / hit.count / 1000 if hit.count else float("nan")), (
        miss.ns / miss.count / 1000 if miss.count else float("nan")
    )


def in_process_ns(rounds: int = 20_000) -> tuple[float, float, float]:
    """ns per key, per hit (key and lookup), per miss (key, lookup and insertion)."""
    rng = np.random.default_rng(1)
    requests = [
        InferRequest("mlp_cached", {"input": rng.standard_normal((1, WIDTH), dtype=np.float32)})
        for _ in range(rounds)
    ]
    output = {"output": rng.standard_normal((1, WIDTH), dtype=np.float32)}
    cache = ResponseCache(CACHE_BYTES)
    start = time.perf_counter_ns()
    keys = [cache_key("mlp_cached", 1, r) for r in requests]
    key_ns = (time.perf_counter_ns() - start) / rounds
    start = time.perf_counter_ns()
    for request in requests:
        key = cache_key("mlp_cached", 1, request)
        if cache.lookup(key) is None:
            cache.insert(key, output)
    miss_ns = (time.perf_counter_ns() - start) / rounds
    start = time.perf_counter_ns()
    for request in requests:
        cache.lookup(cache_key("mlp_cached", 1, request))
    hit_ns = (time.perf_counter_ns() - start) / rounds
    assert all(cache.lookup(k) is not None for k in keys[-10:])
    return key_ns, hit_ns, miss_ns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    rows: list[tuple[str, Figures]] = []
    with tempfile.TemporaryDirectory() as folder:
        repository = write_repository(Path(folder))
        with served(repository, "--cache-config", f"local,size={CACHE_BYTES}") as server:
            for repeated in (0.0, 0.5, 0.95):
                for model in ("mlp", "mlp_cached"):
                    cache = "cache" if model == "mlp_cached" else "no cache"
                    label = f"{repeated:4.0%} repeated, {cache}"
                    figures = load_from_processes(
                        caller(server.grpc_url, model, repeated),
                        args.concurrency,
                        args.seconds,
                        label,
                    )
                    rows.append((model, figures))
            hit_us, miss_us = server_lookup_us(server.grpc_url)
    print(f"concurrency {args.concurrency}, {args.seconds:.0f} s per row, batch-1 gRPC requests")
    print(HEADER.replace("vs raw", "vs none"))
    for index, (model, figures) in enumerate(rows):
        baseline = rows[index - 1][1] if model == "mlp_cached" else None
        print(figures.row(baseline))
    key_ns, hit_ns, miss_ns = in_process_ns()
    print()
    print(f"server, per request: hit lookup {hit_us:.1f} µs, miss lookup + insert {miss_us:.1f} µs")
    print(
        f"in process, 1x{WIDTH} FP32: key {key_ns / 1000:.2f} µs, key + hit "
        f"{hit_ns / 1000:.2f} µs, key + miss + insert {miss_ns / 1000:.2f} µs"
    )


if __name__ == "__main__":
    main()
