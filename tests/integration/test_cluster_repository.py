"""The model repository on a real Ray cluster (a head and one worker node on this machine):
explicit load and unload, versions and polling move remote instances as they move local ones,
and a version's files reach a host by the object store, or by the shared path with
`--cluster-repo-shared`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from inferd.cluster.files import CACHE_ENV
from tests.integration.ray_cluster import LocalRayCluster, ray_cluster
from tests.integration.server import RunningServer, running_server

pytestmark = pytest.mark.timeout(600)

CONFIG = (
    'name: "versioned" backend: "python" max_batch_size: 8\n'
    'input [ { name: "INPUT", data_type: TYPE_FP32, dims: [ 4 ] } ]\n'
    'output [ { name: "OUTPUT", data_type: TYPE_FP32, dims: [ 4 ] },'
    ' { name: "PID", data_type: TYPE_INT64, dims: [ 1 ] } ]\n'
    "instance_group [ { count: 1, kind: KIND_CPU } ]\n"
    'parameters { key: "inferd.cluster.in_process" value: { string_value: "false" } }\n'
)

# Each version adds its own number, so an answer says which version's files the host ran,
# and names the host's process.
VERSION_CODE = """
import os
import numpy as np

class InferdModel:
    def execute(self, batch):
        rows = len(batch.inputs["INPUT"])
        return {{
            "OUTPUT": batch.inputs["INPUT"] + {version},
            "PID": np.full((rows, 1), os.getpid(), np.int64),
        }}
"""


def _add_version(repository: Path, version: int) -> None:
    folder = repository / "versioned" / str(version)
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(VERSION_CODE.format(version=version))


@pytest.fixture(scope="module")
def node_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where the cluster's hosts unpack shipped versions: hosts inherit the environment of the
    Ray processes, which inherit this process's."""
    folder = tmp_path_factory.mktemp("node_cache")
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    try:
        yield folder
    finally:
        if before is None:
            del os.environ[CACHE_ENV]
        else:
            os.environ[CACHE_ENV] = before


@pytest.fixture(scope="module")
def cluster(node_cache: Path) -> Iterator[LocalRayCluster]:
    with ray_cluster(workers=1) as running:
        yield running


def _answer(server: RunningServer, version: str = "") -> tuple[float, int]:
    """What `versioned` adds to its input (its version number), and its host's process id."""
    tensor = httpclient.InferInput("INPUT", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 4), np.float32))
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        result = client.infer("versioned", [tensor], model_version=version)
    finally:
        client.close()
    output, pid = result.as_numpy("OUTPUT"), result.as_numpy("PID")
    assert output is not None and pid is not None
    return float(output[0, 0]), int(pid[0, 0])


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _within(seconds: float, done: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(0.2)
    return done()


def test_explicit_load_and_unload_start_and_stop_remote_hosts(
    cluster: LocalRayCluster, node_cache: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    (tmp_path / "versioned").mkdir()
    (tmp_path / "versioned" / "config.pbtxt").write_text(CONFIG)
    _add_version(tmp_path, 1)
    with running_server(
        tmp_path, "--cluster", cluster.address, "--model-control-mode", "explicit", timeout=180
    ) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        request.addfinalizer(client.close)
        with pytest.raises(InferenceServerException):
            _answer(server)
        client.load_model("versioned")
        added, first_pid = _answer(server)
        assert added == 1.0
        assert first_pid != server.process.pid
        # The version reached the node through the object store and was unpacked there.
        assert list(node_cache.glob("*/versioned/1/model.py"))

        client.unload_model("versioned")
        assert _within(30, lambda: _gone(first_pid))
        with pytest.raises(InferenceServerException):
            _answer(server)

        # A new version in the folder and a load again: a new host runs the new files.
        _add_version(tmp_path, 2)
        client.load_model("versioned")
        added, pid = _answer(server)
        assert (added, pid != first_pid) == (2.0, True)


def test_versions_and_polling_with_a_shared_repository(
    cluster: LocalRayCluster, node_cache: Path, tmp_path: Path
) -> None:
    (tmp_path / "versioned").mkdir()
    (tmp_path / "versioned" / "config.pbtxt").write_text(
        CONFIG + "version_policy: { specific: { versions: [ 1, 2 ] } }\n"
    )
    for version in (1, 2, 3):
        _add_version(tmp_path, version)
    shipped_before = set(node_cache.iterdir())
    with running_server(
        tmp_path,
        "--cluster", cluster.address,
        "--cluster-repo-shared",
        "--model-control-mode", "poll",
        "--repository-poll-secs", "0.5",
        timeout=180,
    ) as server:  # fmt: skip
        # Two versions, each on a host of its own, each answering with its own files.
        one, one_pid = _answer(server, "1")
        two, two_pid = _answer(server, "2")
        assert (one, two) == (1.0, 2.0)
        assert len({one_pid, two_pid, server.process.pid}) == 3
        with pytest.raises(InferenceServerException, match="3"):
            _answer(server, "3")
        # Hosts read the shared path: nothing was shipped to the node's cache.
        assert set(node_cache.iterdir()) == shipped_before

        # The poll sees the new policy: version 3 comes, version 1 goes with its host.
        config = tmp_path / "versioned" / "config.pbtxt"
        config.write_text(config.read_text().replace("[ 1, 2 ]", "[ 2, 3 ]"))

        def moved() -> bool:
            try:
                return _answer(server, "3")[0] == 3.0
            except InferenceServerException:
                return False

        assert _within(60, moved)
        assert _answer(server, "2")[0] == 2.0
        with pytest.raises(InferenceServerException):
            _answer(server, "1")
        assert _within(30, lambda: _gone(one_pid))
