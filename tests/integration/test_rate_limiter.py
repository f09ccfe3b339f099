"""The rate limiter, passive instances and ensemble back-pressure through the real server.

The Python models here note what they do in files of a folder named by their config: each
execution's interval (monotonic clock, shared by threads and processes), and how many
executions using that folder run at once (a marker file per execution). With
`--rate-limit execution_count`, two models sharing one copy of a resource never execute at
the same time; with `--rate-limit off` the same configs run them together (they meet: each
waits until the other is executing). A passive instance is loaded but executes nothing; an
ensemble with `max_inflight_requests: 1` has one request at a time in its slow step.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.classic_helpers import model_states
from tests.integration.model_files import write
from tests.integration.server import RunningServer, running_server

# OUT: how many executions of the folder ran when this one started (after meeting its
# `partner`, when it has one: then 1.0 when the partner was seen executing, else 0.0).
MODEL = """
import os
import time
import uuid

import numpy as np


class InferdModel:
    def initialize(self, context):
        self.model = context.model_name
        self.instance = context.instance_name
        self.folder = context.parameters["folder"]
        self.seconds = float(context.parameters["seconds"])
        self.partner = context.parameters.get("partner", "")
        os.makedirs(os.path.join(self.folder, "running"), exist_ok=True)
        self.note("init")

    def note(self, line):
        with open(os.path.join(self.folder, "log.txt"), "a") as log:
            log.write(f"{line} {self.model} {self.instance}\\n")

    def execute(self, batch):
        start = time.monotonic()
        marker = os.path.join(self.folder, "running", uuid.uuid4().hex)
        open(marker, "w").close()
        value = float(len(os.listdir(os.path.join(self.folder, "running"))))
        if self.partner:
            open(os.path.join(self.folder, "started_" + self.model), "w").close()
            seen = os.path.join(self.folder, "started_" + self.partner)
            deadline = time.monotonic() + 20
            while not os.path.exists(seen) and time.monotonic() < deadline:
                time.sleep(0.01)
            value = float(os.path.exists(seen))
        time.sleep(self.seconds)
        os.remove(marker)
        self.note(f"exec {start!r} {time.monotonic()!r}")
        return {"OUT": np.array([value], dtype=np.float32)}
"""

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "IN", data_type: TYPE_FP32, dims: [ 1 ] }} ]
output [ {{ name: "OUT", data_type: TYPE_FP32, dims: [ 1 ] }} ]
instance_group [ {groups} ]
parameters [
  {{ key: "folder", value: {{ string_value: "{folder}" }} }},
  {{ key: "seconds", value: {{ string_value: "{seconds}" }} }},
  {{ key: "partner", value: {{ string_value: "{partner}" }} }}
]
"""

ENSEMBLE = """
name: "{name}"
platform: "ensemble"
max_batch_size: 0
input [ { name: "IN", data_type: TYPE_FP32, dims: [ 1 ] } ]
output [ { name: "OUT", data_type: TYPE_FP32, dims: [ 1 ] } ]
ensemble_scheduling {
  max_inflight_requests: {bound}
  step [
    { model_name: "fast", model_version: -1,
      input_map { key: "IN", value: "IN" }, output_map { key: "OUT", value: "X" } },
    { model_name: "slow", model_version: -1,
      input_map { key: "IN", value: "X" }, output_map { key: "OUT", value: "OUT" } }
  ]
}
"""


def needing(count: int, priority: int = 0) -> str:
    """One CPU instance that needs `count` copies of resource R."""
    return (
        "{ count: 1, kind: KIND_CPU, rate_limiter { "
        f'resources [ {{ name: "R", count: {count} }} ] priority: {priority} }} }}'
    )


def model(
    repository: Path,
    name: str,
    groups: str,
    folder: Path,
    seconds: float = 0.0,
    partner: str = "",
) -> None:
    folder.mkdir(exist_ok=True)
    config = CONFIG.format(
        name=name, groups=groups, folder=folder, seconds=seconds, partner=partner
    )
    write(repository, name, MODEL, config)


def ensemble(repository: Path, name: str, bound: int) -> None:
    (repository / name / "1").mkdir(parents=True)
    config = ENSEMBLE.replace("{name}", name).replace("{bound}", str(bound))
    (repository / name / "config.pbtxt").write_text(config)


def log(folder: Path) -> list[list[str]]:
    return [line.split() for line in (folder / "log.txt").read_text().splitlines()]


def infer(server: RunningServer, name: str) -> float:
    client = httpclient.InferenceServerClient(server.http_url, network_timeout=120)
    try:
        tensor = httpclient.InferInput("IN", [1], "FP32")
        tensor.set_data_from_numpy(np.zeros(1, dtype=np.float32))
        return float(client.infer(name, [tensor]).as_numpy("OUT")[0])
    finally:
        client.close()


def infer_all(server: RunningServer, names: list[str]) -> list[float]:
    """One request per name, all sent at once."""
    with ThreadPoolExecutor(len(names)) as pool:
        return list(pool.map(lambda name: infer(server, name), names))


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path]]:
    root = tmp_path_factory.mktemp("limited")
    repository, shared, passive, steps = (root / n for n in ("models", "shared", "p", "steps"))
    model(repository, "left", needing(1), shared, 0.05)
    model(repository, "right", needing(1, priority=2), shared, 0.05)
    model(repository, "greedy", needing(2), shared)
    groups = (
        '{ name: "active", count: 1, kind: KIND_CPU }, '
        '{ name: "idle", count: 2, kind: KIND_CPU, passive: true }'
    )
    model(repository, "mixed", groups, passive)
    model(repository, "asleep", "{ count: 1, kind: KIND_CPU, passive: true }", root / "asleep")
    model(repository, "fast", "{ count: 1, kind: KIND_CPU }", root / "fast")
    model(repository, "slow", "{ count: 4, kind: KIND_CPU }", steps, 0.2)
    ensemble(repository, "bounded", 1)
    ensemble(repository, "unbounded", 0)
    flags = ("--rate-limit", "execution_count", "--rate-limit-resource", "R:1")
    with running_server(repository, "--no-strict-readiness", *flags) as server:
        yield server, root


def test_models_sharing_one_copy_never_execute_at_the_same_time(
    limited: tuple[RunningServer, Path],
) -> None:
    server, root = limited
    answers = infer_all(server, ["left", "right"] * 6)
    assert answers == [1.0] * 12  # each execution alone in the folder when it started
    executions = [row for row in log(root / "shared") if row[0] == "exec"]
    assert sorted(row[3] for row in executions) == ["left"] * 6 + ["right"] * 6
    intervals = sorted((float(row[1]), float(row[2])) for row in executions)
    for (_, end), (start, _) in itertools.pairwise(intervals):
        assert start >= end, f"two executions overlapped: {intervals}"


def test_a_model_asking_more_than_the_server_has_is_refused_at_load(
    limited: tuple[RunningServer, Path],
) -> None:
    state, reason = model_states(limited[0])["greedy"]
    assert state == "UNAVAILABLE"
    assert reason == (
        'Resource count for "R" is limited to 1 which will prevent scheduling of one or more '
        "model instances, the minimum required count is 2"
    )


def test_passive_instances_load_but_execute_nothing(limited: tuple[RunningServer, Path]) -> None:
    server, root = limited
    assert infer_all(server, ["mixed"] * 6) == [1.0] * 6  # one active instance: one at a time
    rows = log(root / "p")
    assert sorted(row[-1] for row in rows if row[0] == "init") == ["active_0", "idle_0", "idle_1"]
    assert [row[-1] for row in rows if row[0] == "exec"] == ["active_0"] * 6
    client = httpclient.InferenceServerClient(server.http_url)
    listed = [instance["name"] for instance in client.get_model_metadata("mixed")["instances"]]
    client.close()
    assert listed == ["active_0", "idle_0", "idle_1"]


def test_a_model_whose_instances_are_all_passive_refuses_requests(
    limited: tuple[RunningServer, Path],
) -> None:
    server, root = limited
    assert model_states(server)["asleep"][0] == "READY"
    with pytest.raises(InferenceServerException, match="every instance of model 'asleep' is"):
        infer(server, "asleep")
    assert [row[0] for row in log(root / "asleep")] == ["init"]


@pytest.mark.parametrize(("name", "bounded"), [("bounded", True), ("unbounded", False)])
def test_max_inflight_requests_holds_one_request_in_the_slow_step(
    limited: tuple[RunningServer, Path], name: str, bounded: bool
) -> None:
    server, _ = limited
    answers = infer_all(server, [name] * 8)
    assert len(answers) == 8  # every request completes
    if bounded:
        assert max(answers) == 1.0
    else:  # the measure sees concurrency when there is some: 4 instances take 8 requests
        assert max(answers) > 1.0


@pytest.fixture(scope="module")
def unlimited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("unlimited")
    repository, shared = root / "models", root / "shared"
    model(repository, "left", needing(1), shared, 0.3, partner="right")
    model(repository, "right", needing(1), shared, 0.3, partner="left")
    with running_server(repository, "--rate-limit", "off", "--rate-limit-resource", "R:1") as s:
        yield s


def test_rate_limit_off_ignores_the_configs(unlimited: RunningServer) -> None:
    # Each waits until the other executes: only possible when both run at once.
    assert infer_all(unlimited, ["left", "right"]) == [1.0, 1.0]


def test_a_malformed_rate_limit_resource_stops_the_server_at_once(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "inferd", "serve", "--model-repository", str(tmp_path)]
    done = subprocess.run(
        [*command, "--rate-limit-resource", "R:many"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "--rate-limit-resource 'R:many': COUNT and DEVICE must be integers" in done.stderr
