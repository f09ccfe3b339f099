"""Classic ML models on one tabular dataset, each served natively (scikit-learn, XGBoost,
LightGBM backends) and as ONNX (`inferd convert`, ONNX Runtime backend), next to the
library's raw in-process rate.

    python benchmarks/classic_ml.py [--seconds 3] [--concurrency 16] [--only forest xgboost]

The dataset is synthetic (scikit-learn's make_classification: 20 000 rows, 20 FP32
features, two classes), so nothing is downloaded. One server serves every model with dynamic
batching (max_batch_size 16, 500 us delay), one instance, one library thread. Clients are
`concurrency` processes sending batch-1 requests over HTTP with binary tensors, asking for
the class probabilities. "raw b16" is the library (or ONNX Runtime, one thread) called in
this process on batches of 16 rows, in rows/s; "x raw" is the served rate over it.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common import HEADER, load_from_processes, served, time_calls

FEATURES = 20
BATCH = 16
CONFIG = """\
backend: "{backend}"
max_batch_size: 16
input [ {{ name: "input__0", data_type: TYPE_FP32, dims: [ {features} ] }} ]
output [ {{ name: "{output}", data_type: TYPE_FP32, dims: [ {width} ] }} ]
instance_group [ {{ count: 1, kind: KIND_CPU }} ]
dynamic_batching {{ max_queue_delay_microseconds: 500 }}
"""
ONE_THREAD = 'parameters {{ key: "{}" value {{ string_value: "1" }} }}\n'


@dataclass(frozen=True)
class Kind:
    """One kind of model: how it is trained, saved and called, natively and as ONNX."""

    name: str
    label: str
    backend: str
    file: str
    output: str  # the native model's probabilities output
    width: int  # its dims
    threads: str | None  # the backend's thread-count parameter (scikit-learn: n_jobs=1)


KINDS = {
    "linear": Kind(
        "linear", "sklearn scaler + logistic regr.", "sklearn", "model.joblib",
        "predict_proba", 2, None,
    ),
    "forest": Kind(
        "forest", "sklearn forest (100 trees, depth 8)", "sklearn", "model.joblib",
        "predict_proba", 2, None,
    ),
    "xgboost": Kind(
        "xgboost", "XGBoost (100 trees, depth 6)", "xgboost", "model.json", "predict", 1,
        "nthread",
    ),
    "lightgbm": Kind(
        "lightgbm", "LightGBM (100 trees, 31 leaves)", "lightgbm", "model.txt", "predict", 1,
        "num_threads",
    ),
}  # fmt: skip


def dataset() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=20_000, n_features=FEATURES, n_informative=10, random_state=0
    )
    return x.astype(np.float32), y


def train(kind: Kind, x: np.ndarray, y: np.ndarray, version: Path) -> Any:
    """The trained model, saved in `version`; returned as the object whose method the raw
    rate calls."""
    version.mkdir(parents=True)
    if kind.backend == "xgboost":
        import xgboost

        model = xgboost.XGBClassifier(n_estimators=100, max_depth=6, n_jobs=1).fit(x, y)
        model.save_model(version / kind.file)
        return model.get_booster()
    if kind.backend == "lightgbm":
        import lightgbm

        model = lightgbm.LGBMClassifier(n_estimators=100, n_jobs=1, verbose=-1).fit(x, y)
        model.booster_.save_model(str(version / kind.file))
        return model.booster_
    import joblib
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    estimator = (
        make_pipeline(StandardScaler(), LogisticRegression())
        if kind.name == "linear"
        else RandomForestClassifier(n_estimators=100, max_depth=8, n_jobs=1, random_state=0)
    ).fit(x, y)
    joblib.dump(estimator, version / kind.file)
    return estimator


def native_call(kind: Kind, model: Any) -> Callable[[np.ndarray], np.ndarray]:
    if kind.backend == "xgboost":
        model.set_param({"nthread": 1})
        return lambda x: model.inplace_predict(x)
    if kind.backend == "lightgbm":
        return lambda x: model.predict(x, num_threads=1)
    return lambda x: model.predict_proba(x)


def onnx_call(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(["probabilities"], {"input__0": x})[0]


def write_repository(root: Path, kinds: list[Kind]) -> dict[str, Callable[[np.ndarray], Any]]:
    """Each kind natively and as ONNX under `root`; model name -> its raw call."""
    from inferd.cli.convert import convert

    x, y = dataset()
    calls = {}
    for kind in kinds:
        model = train(kind, x, y, root / kind.name / "1")
        config = CONFIG.format(
            backend=kind.backend, features=FEATURES, output=kind.output, width=kind.width
        )
        threads = ONE_THREAD.format(kind.threads) if kind.threads else ""
        (root / kind.name / "config.pbtxt").write_text(config + threads)
        calls[kind.name] = native_call(kind, model)
        onnx_name = f"{kind.name}_onnx"
        convert(root / kind.name, root / onnx_name)
        config = CONFIG.format(
            backend="onnxruntime", features=FEATURES, output="probabilities", width=2
        )
        (root / onnx_name / "config.pbtxt").write_text(
            config + ONE_THREAD.format("intra_op_thread_count")
        )
        calls[onnx_name] = onnx_call(root / onnx_name / "1" / "model.onnx")
    return calls


def served_answer(url: str, model: str, output: str, x: np.ndarray) -> np.ndarray:
    """Plain JSON over urllib: a tritonclient.http client here would start a gevent hub that
    the forked clients would inherit."""
    body = {"inputs": [{"name": "input__0", "shape": list(x.shape), "datatype": "FP32",
                        "data": x.ravel().tolist()}], "outputs": [{"name": output}]}  # fmt: skip
    request = urllib.request.Request(
        f"http://{url}/v2/models/{model}/infer", data=json.dumps(body).encode()
    )
    with urllib.request.urlopen(request) as response:
        answer = json.load(response)["outputs"][0]
    return np.asarray(answer["data"], np.float64).reshape(answer["shape"])


def http_call(url: str, model: str, output: str) -> Callable[[], Callable[[], object]]:
    def make_call() -> Callable[[], object]:
        import tritonclient.http as httpclient

        client = httpclient.InferenceServerClient(url)
        x = dataset()[0][:1]
        item = httpclient.InferInput("input__0", [1, FEATURES], "FP32")
        item.set_data_from_numpy(x, binary_data=True)
        requested = httpclient.InferRequestedOutput(output, binary_data=True)
        return lambda: client.infer(model, [item], outputs=[requested])

    return make_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--only", nargs="*", choices=list(KINDS), default=list(KINDS))
    args = parser.parse_args()
    kinds = [KINDS[name] for name in args.only]
    root = Path(tempfile.mkdtemp(prefix="inferd-classic-"))
    calls = write_repository(root, kinds)
    rows = dataset()[0][:BATCH]
    print(f"{args.concurrency} clients, batch-1 requests; raw: batches of {BATCH} rows\n")
    print(f"{HEADER.rsplit(maxsplit=2)[0]}  {'raw b16 rows/s':>15} {'x raw':>6}")
    with served(root) as server:
        for kind in kinds:
            for model, output in ((kind.name, kind.output), (f"{kind.name}_onnx", "probabilities")):
                call = calls[model]
                expected = np.asarray(call(rows[:4]), np.float64).reshape(4, -1)
                got = served_answer(server.http_url, model, output, rows[:4]).reshape(4, -1)
                np.testing.assert_allclose(got[:, -1], expected[:, -1], rtol=1e-4, atol=1e-5)
                raw = time_calls("raw", lambda call=call: call(rows), args.seconds)
                raw_rows = raw.throughput * BATCH
                label = f"{kind.label}{' as ONNX' if model.endswith('_onnx') else ''}"
                figures = load_from_processes(
                    http_call(server.http_url, model, output), args.concurrency, args.seconds,
                    label[:44],
                )  # fmt: skip
                ratio = figures.throughput / raw_rows
                print(f"{figures.row().rstrip()}  {raw_rows:15.0f} {ratio:6.3f}", flush=True)


if __name__ == "__main__":
    main()
