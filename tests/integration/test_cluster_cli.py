"""`inferd serve --cluster` from the command line: a simulated cluster started and stopped
with the server, and the clear errors for a wrong address or a missing Ray."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.integration.server import running_server, stop_server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "model_repository"


def _serve(repository: Path, *args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    code = (
        f"import sys; {prelude}from inferd.cli.main import main; "
        f"sys.exit(main(['serve', '--model-repository', {str(repository)!r}, *sys.argv[1:]]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
    )


def test_an_address_where_no_cluster_answers_fails_fast_and_names_it(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    start = time.monotonic()
    done = _serve(tmp_path, "--cluster", "127.0.0.1:9", "--http-port", "0")
    assert done.returncode != 0
    assert time.monotonic() - start < 30
    assert "--cluster 127.0.0.1:9: no Ray head node answers there" in done.stderr


@pytest.mark.parametrize("address", ["nonsense", "local:0", "local:x"])
def test_a_malformed_address_is_refused(tmp_path: Path, address: str) -> None:
    pytest.importorskip("ray")
    done = _serve(tmp_path, "--cluster", address)
    assert done.returncode == 2
    assert f"--cluster {address}:" in done.stderr


def test_without_ray_the_error_names_the_extra(tmp_path: Path) -> None:
    done = _serve(tmp_path, "--cluster", "local:2", prelude="sys.modules['ray'] = None; ")
    assert done.returncode == 2
    assert "pip install 'inferd[ray]'" in done.stderr


def test_cluster_status_needs_a_running_clusters_address() -> None:
    pytest.importorskip("ray")
    done = subprocess.run(
        [sys.executable, "-m", "inferd", "cluster", "status", "--cluster", "local:3"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "GCS at HOST:PORT" in done.stderr


@pytest.mark.timeout(600)
def test_a_simulated_cluster_serves_and_stops_with_the_server(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    shutil.copytree(EXAMPLES / "simple", tmp_path / "simple")
    config = tmp_path / "simple" / "config.pbtxt"
    config.write_text(config.read_text().replace("count: 1", "count: 2"))
    with running_server(tmp_path, "--cluster", "local:2", timeout=180) as server:
        assert "instance simple_0_1 runs on node" in server.log_text() or (
            "instance simple_0_0 runs on node" in server.log_text()
        )
        client = httpclient.InferenceServerClient(server.http_url)
        in0 = np.arange(16, dtype=np.int32).reshape(1, 16)
        for _ in range(4):
            tensors = [httpclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
            for tensor in tensors:
                tensor.set_data_from_numpy(in0)
            result = client.infer("simple", tensors)
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), in0 * 2)
        client.close()
        assert stop_server(server, timeout=60) == 0
    assert "stopped" in server.log_text()
