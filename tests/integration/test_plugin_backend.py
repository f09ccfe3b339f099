"""A third-party backend, installed as its own package, found through the entry point and served.

The example plugin in examples/plugins/inferd-numpy-backend is installed into a temporary
folder (never into this environment); the server only sees it through PYTHONPATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from tests.conftest import ROOT
from tests.integration.http_helpers import get_json, post_json
from tests.integration.server import RunningServer, running_server

PLUGIN = ROOT / "examples" / "plugins" / "inferd-numpy-backend"
IN_FEATURES, OUT_FEATURES = 6, 3


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy: pip builds in the source folder, which must stay clean.
    source = tmp_path_factory.mktemp("plugin-source") / PLUGIN.name
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        check=True, capture_output=True, timeout=110,
    )  # fmt: skip
    return target


@pytest.fixture(scope="module")
def weights() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    weight = rng.standard_normal((IN_FEATURES, OUT_FEATURES)).astype(np.float32)
    return weight, rng.standard_normal(OUT_FEATURES).astype(np.float32)


@pytest.fixture(scope="module")
def plugin_server(
    plugin_path: Path,
    weights: tuple[np.ndarray, np.ndarray],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("plugin-repository")
    for model in ("linear", "linear_gpu"):
        (repository / model / "1").mkdir(parents=True)
        np.savez(repository / model / "1" / "model.npz", W=weights[0], b=weights[1])
    # No config for `linear`: the backend is found by its file and completes the config.
    (repository / "linear_gpu" / "config.pbtxt").write_text(
        'backend: "numpy_linear"\ninstance_group [ { kind: KIND_GPU } ]\n'
    )
    pythonpath = os.pathsep.join(p for p in (str(plugin_path), os.environ.get("PYTHONPATH")) if p)
    with running_server(repository, env={"PYTHONPATH": pythonpath}) as server:
        yield server


def test_plugin_completes_the_config(plugin_server: RunningServer) -> None:
    status, config = get_json(plugin_server.http_port, "/v2/models/linear/config")
    assert status == 200
    assert config["backend"] == "numpy_linear"
    assert config["max_batch_size"] > 0
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("INPUT0", "TYPE_FP32", [IN_FEATURES])
    ]
    assert [(t["name"], t["dims"]) for t in config["output"]] == [("OUTPUT0", [OUT_FEATURES])]


@pytest.mark.parametrize("client_module", [httpclient, grpcclient], ids=["http", "grpc"])
def test_plugin_serves_the_linear_layer(
    plugin_server: RunningServer, weights: tuple[np.ndarray, np.ndarray], client_module: object
) -> None:
    url = plugin_server.http_url if client_module is httpclient else plugin_server.grpc_url
    client = client_module.InferenceServerClient(url)  # type: ignore[attr-defined]
    x = np.random.default_rng(1).standard_normal((2, IN_FEATURES)).astype(np.float32)
    infer_input = client_module.InferInput("INPUT0", list(x.shape), "FP32")  # type: ignore[attr-defined]
    infer_input.set_data_from_numpy(x)
    result = client.infer("linear", [infer_input]).as_numpy("OUTPUT0")
    np.testing.assert_allclose(result, x @ weights[0] + weights[1], rtol=1e-6, atol=1e-6)
    client.close()


def test_plugin_gpu_config_is_refused_with_the_reason(plugin_server: RunningServer) -> None:
    status, rows = post_json(plugin_server.http_port, "/v2/repository/index", {})
    assert status == 200
    row = next(r for r in rows if r["name"] == "linear_gpu")
    assert row["state"] == "UNAVAILABLE"
    assert "KIND_GPU" in row["reason"] and "numpy_linear" in row["reason"]
