"""What Triton's lifecycle QA (qa/L0_lifecycle: test_config_override, test_file_override) needs
of a server, through the real server and tritonclient: a version that the version policy names
but the repository lacks is logged and left out, not a failed version that keeps the server
from being ready; one repository named twice is one repository; a load whose versions all fail
is worded as Triton words it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import generate_models  # examples/, put on sys.path by tests/conftest.py
from tests.integration.server import running_server

POLICY = "version_policy: { specific { versions: [1, 3] }}\n"


def _simple(repository: Path, versions: tuple[int, ...], extra: str = "") -> None:
    for version in versions:
        generate_models.simple_model(repository / "simple" / str(version) / "model.onnx")
    (repository / "simple" / "config.pbtxt").write_text(generate_models.SIMPLE_CONFIG + extra)


def test_a_version_named_by_the_policy_but_absent_is_left_out(tmp_path: Path) -> None:
    _simple(tmp_path, (3,), POLICY)
    # Strict readiness (the default): the server gets ready, as Triton's does.
    with running_server(tmp_path) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        try:
            assert client.is_server_ready()
            assert client.is_model_ready("simple", "3")
            assert not client.is_model_ready("simple", "1")
            index = client.get_model_repository_index()
            assert [(m["name"], m.get("version"), m["state"]) for m in index] == [
                ("simple", "3", "READY")
            ]
        finally:
            client.close()
        assert (
            "version 1 is specified for model 'simple', but the version directory is not present"
        ) in server.log_text()


def test_a_policy_naming_only_absent_versions_says_so(tmp_path: Path) -> None:
    _simple(tmp_path, (2,), POLICY)
    with running_server(tmp_path, "--no-strict-readiness") as server:
        client = httpclient.InferenceServerClient(server.http_url)
        try:
            (model,) = client.get_model_repository_index()
            assert model["state"] == "UNAVAILABLE"
            assert model["reason"] == "no version folder to serve (version_policy names 1, 3)"
        finally:
            client.close()


def test_one_repository_named_twice_serves_its_models_once(tmp_path: Path) -> None:
    _simple(tmp_path, (1,))
    with running_server(tmp_path, "--model-repository", str(tmp_path)) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            assert client.is_server_ready() and client.is_model_ready("simple")
        finally:
            client.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_load_whose_versions_all_fail_is_worded_as_tritons(tmp_path: Path, protocol: str) -> None:
    _simple(tmp_path, (1, 3), POLICY)
    for version in (1, 3):
        (tmp_path / "simple" / str(version) / "model.onnx").unlink()
    with running_server(tmp_path, "--model-control-mode", "explicit") as server:
        module = httpclient if protocol == "http" else grpcclient
        client = module.InferenceServerClient(
            server.http_url if protocol == "http" else server.grpc_url
        )
        try:
            with pytest.raises(InferenceServerException) as caught:
                client.load_model("simple")
            assert caught.value.message().startswith(
                "load failed for model 'simple': version 1 is at UNAVAILABLE state: "
            )
            assert "; version 3 is at UNAVAILABLE state: " in caught.value.message()
            assert caught.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
            # a config naming a present version then loads it
            (tmp_path / "simple" / "2").mkdir()
            generate_models.simple_model(tmp_path / "simple" / "2" / "model.onnx")
            override = {"version_policy": {"specific": {"versions": [2]}}}
            client.load_model("simple", config=json.dumps(override))
            assert client.is_model_ready("simple", "2")
            client.unload_model("simple")
            (tmp_path / "simple" / "2" / "model.onnx").unlink()
            (tmp_path / "simple" / "2").rmdir()
        finally:
            client.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_load_without_config_keeps_the_last_override_until_unload(
    tmp_path: Path, protocol: str
) -> None:
    _simple(tmp_path, (1,))
    with running_server(tmp_path, "--model-control-mode", "explicit") as server:
        client = httpclient.InferenceServerClient(server.http_url)
        loader = client if protocol == "http" else grpcclient.InferenceServerClient(server.grpc_url)
        try:
            loader.load_model("simple", config=json.dumps({"max_batch_size": 2}))
            loader.load_model("simple")  # a reload: the override stays (Triton's behaviour)
            assert client.get_model_config("simple")["max_batch_size"] == 2
            loader.unload_model("simple")
            loader.load_model("simple")  # after an unload: the config file again
            assert client.get_model_config("simple")["max_batch_size"] == 8
        finally:
            client.close()
            loader.close()
