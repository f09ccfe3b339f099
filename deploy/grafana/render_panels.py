"""Draw the panels of `inferd.json` from a live inferd, without Grafana.

    python deploy/grafana/render_panels.py [--seconds 60] [--output docs/images/dashboard.png]

Starts a real `inferd serve` on free loopback ports with three example models (an ONNX model,
a Python model with dynamic batching, an ensemble), loads it from client threads in three
phases (with a few invalid requests and one model that fails to load), scrapes /metrics every
second, evaluates each panel's PromQL over those scrapes (`promql_subset.py`; `$model` is
every model, `$__rate_interval` 5 s, `$__range` the run) and draws the panels where the
dashboard places them, with matplotlib (`pip install 'inferd[bench]'`). The picture shows
what the dashboard plots; it is not a Grafana screenshot.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from promql_subset import Labels, Scrape, Vector, parse

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = Path(__file__).resolve().parent / "inferd.json"
MODELS = ("simple", "add_sub_python", "pipeline")
ENSEMBLE_STEPS = (
    "pipeline_preprocess",
    "pipeline_branch_a",
    "pipeline_branch_b",
    "pipeline_postprocess",
)
RATE_INTERVAL = 5.0
# (share of the run, client threads) of each load phase.
PHASES = ((0.35, 2), (0.35, 6), (0.3, 3))
INPUTS = {
    "simple": [("INPUT0", [1, 16], "INT32"), ("INPUT1", [1, 16], "INT32")],
    "add_sub_python": [("INPUT0", [1, 4], "FP32"), ("INPUT1", [1, 4], "FP32")],
    "pipeline": [("RAW", [1, 8], "FP32")],
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def inferd(repository: Path) -> Iterator[tuple[str, str]]:
    """A server of `MODELS` in explicit mode: (http base, metrics url)."""
    http, grpc, metrics = free_port(), free_port(), free_port()
    command = [
        sys.executable, "-m", "inferd", "serve", "--model-repository", str(repository),
        "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
        "--model-control-mode", "explicit", *(f"--load-model={m}" for m in MODELS),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 120
        while not _ok(f"{base}/v2/health/ready"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("inferd did not start")
            time.sleep(0.2)
        yield base, f"http://127.0.0.1:{metrics}/metrics"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _ok(url: str, body: bytes | None = None) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30):
            return True
    except (urllib.error.URLError, ConnectionError):
        return False


def request_body(model: str, valid: bool) -> bytes:
    inputs = [
        {"name": name, "shape": shape, "datatype": dtype, "data": [1] * math.prod(shape)}
        for name, shape, dtype in INPUTS[model]
    ]
    return json.dumps({"inputs": inputs if valid else inputs[:-1] or [{}]}).encode()


def load(base: str, seconds: float, stop: threading.Event) -> None:
    """Client threads in phases; every 25th request of a thread lacks an input."""
    workers: list[threading.Thread] = []
    for phase, (share, threads) in enumerate(PHASES):
        if phase == 1:
            _ok(f"{base}/v2/repository/models/broken/load", b"{}")  # fails: a load failure
        until = threading.Event()
        for index in range(threads):
            worker = threading.Thread(target=_client, args=(base, MODELS[index % 3], until))
            worker.start()
            workers.append(worker)
        stopped = stop.wait(share * seconds)
        until.set()
        if stopped:
            break
    for worker in workers:
        worker.join()


def _client(base: str, model: str, until: threading.Event) -> None:
    url = f"{base}/v2/models/{model}/infer"
    sent = 0
    while not until.is_set():
        sent += 1
        _ok(url, request_body(model, valid=sent % 25 != 0))


def scrape(url: str) -> dict[tuple[str, Labels], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def run(repository: Path, seconds: float) -> list[Scrape]:
    scrapes: list[Scrape] = []
    with inferd(repository) as (base, metrics_url):
        stop = threading.Event()
        driver = threading.Thread(target=load, args=(base, seconds, stop))
        start = time.monotonic()
        scrapes.append((0.0, scrape(metrics_url)))
        driver.start()
        try:
            while driver.is_alive():
                time.sleep(1.0)
                scrapes.append((time.monotonic() - start, scrape(metrics_url)))
        finally:
            stop.set()
            driver.join()
    return scrapes


def repository_copy(source: Path, into: Path) -> Path:
    """The models this run serves, and `broken`, whose load fails."""
    for name in (*MODELS, *ENSEMBLE_STEPS):
        shutil.copytree(source / name, into / name, ignore=shutil.ignore_patterns("__pycache__"))
    (into / "broken" / "1").mkdir(parents=True)
    (into / "broken" / "1" / "model.onnx").write_bytes(b"not an ONNX model")
    return into


def series(expr: str, legend: str, scrapes: Sequence[Scrape]) -> dict[str, list[float]]:
    """{legend: value at each scrape} of one panel query."""
    ranges = {"$__rate_interval": RATE_INTERVAL, "$__range": scrapes[-1][0]}
    query = parse(expr.replace("$model", ".*"), ranges)
    lines: dict[str, list[float]] = {}
    for index in range(len(scrapes)):
        vector: Vector = query.evaluate(scrapes, index)
        for labels, value in vector.items():
            name = _legend(legend, dict(labels))
            lines.setdefault(name, [math.nan] * len(scrapes))[index] = value
    return lines


def _legend(template: str, labels: dict[str, str]) -> str:
    for key, value in labels.items():
        template = template.replace("{{" + key + "}}", value)
    return template


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration")
    parser.add_argument("--repository", type=Path, default=ROOT / "examples" / "model_repository")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "images" / "dashboard.png")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        scrapes = run(repository_copy(args.repository, Path(folder)), args.seconds)
    from draw_panels import draw

    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    draw(dashboard, scrapes, series, args.output)
    print(f"{args.output}: {len(scrapes)} scrapes over {scrapes[-1][0]:.0f} s")


if __name__ == "__main__":
    main()
