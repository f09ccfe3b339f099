"""What Triton's qa/L0_response_cache asks of the server beyond the features themselves,
through the real server and tritonclient: its older --response-cache-byte-size flag, its
refusals of two caches or two flags, an ensemble with a decoupled step refused the cache, and an
answer that does not fit in the cache (Triton's packed size) missed each time and logged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tritonclient.http as httpclient

from tests.integration.classic_helpers import model_states
from tests.integration.model_files import write
from tests.integration.server import running_server
from tests.integration.test_response_cache import (
    CACHE,
    COUNTED,
    DECOUPLED,
    _config,
    _infer,
    _stats,
    _unique_x,
)

ENSEMBLE = """
name: "ens"
platform: "ensemble"
max_batch_size: 8
input [ { name: "X", data_type: TYPE_FP32, dims: [ 4 ] } ]
output [ { name: "Z", data_type: TYPE_FP32, dims: [ 4 ] } ]
ensemble_scheduling { step [ { model_name: "streamer" model_version: -1
  input_map { key: "X" value: "X" } output_map { key: "Y" value: "Z" } } ] }
response_cache { enable: true }
"""


def _runs_twice(server_url: str) -> tuple[list[int], dict[str, int]]:
    client = httpclient.InferenceServerClient(server_url)
    try:
        x = _unique_x()
        runs = [int(_infer(client, "counted", x).as_numpy("RUN")[0, 0]) for _ in range(2)]
        return runs, _stats(client, "counted")
    finally:
        client.close()


def test_tritons_older_flag_gives_the_server_its_cache(tmp_path: Path) -> None:
    write(tmp_path, "counted", COUNTED, _config("counted", CACHE))
    with running_server(tmp_path, "--response-cache-byte-size", "1048576") as server:
        runs, stats = _runs_twice(server.http_url)
        assert runs == [1, 1]  # the second answer came from the cache
        assert (stats["hits"], stats["misses"]) == (1, 1)
        assert "--response-cache-byte-size is deprecated" in server.log_text()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ("--response-cache-byte-size", "12345", "--cache-config", "local,size=67890"),
            "Incompatible flags --response-cache-byte-size and --cache-config both provided",
        ),
        (
            ("--cache-config", "local,size=8192", "--cache-config", "redis,key=value"),
            "found multiple cache configurations, but only a single cache is currently supported",
        ),
    ],
)
def test_two_caches_or_two_flags_stop_the_server_in_tritons_words(
    tmp_path: Path, flags: tuple[str, ...], message: str
) -> None:
    command = [sys.executable, "-m", "inferd", "serve", "--model-repository", str(tmp_path)]
    done = subprocess.run([*command, *flags], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr


def test_an_ensemble_with_a_decoupled_step_cannot_use_the_cache(tmp_path: Path) -> None:
    decoupled = "model_transaction_policy { decoupled: true }"
    write(tmp_path, "streamer", DECOUPLED, _config("streamer", decoupled, ""))
    (tmp_path / "ens" / "1").mkdir(parents=True)
    (tmp_path / "ens" / "config.pbtxt").write_text(ENSEMBLE)
    flags = ("--cache-config", "local,size=1048576", "--no-strict-readiness")
    with running_server(tmp_path, *flags) as server:
        state, reason = model_states(server)["ens"]
        assert state == "UNAVAILABLE"
        assert reason == (
            "Response Cache does not currently support model ens with 'decoupled' transaction "
            "policy. Please disable the response cache."
        )


def test_an_answer_larger_than_the_cache_misses_each_time_and_is_logged(tmp_path: Path) -> None:
    write(tmp_path, "counted", COUNTED, _config("counted", CACHE))
    # Y (FP32 [1, 4]) and RUN (INT64 [1, 1]) pack into 125 bytes, 145 with the count and key.
    with running_server(tmp_path, "--cache-config", "local,size=140") as server:
        runs, stats = _runs_twice(server.http_url)
        assert runs == [1, 2]
        assert (stats["hits"], stats["misses"]) == (0, 2)
        assert server.count_logged("Failed to insert key [", 2) == 2
