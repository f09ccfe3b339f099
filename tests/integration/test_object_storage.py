"""Model repositories in S3, against a real S3-protocol server started here (moto's
standalone server on 127.0.0.1) and the real `inferd serve` reading it through s3fs: load,
poll mode under traffic (add, replace, remove, a download that fails), explicit load and
unload, a bucket beside a folder, and the errors that stop the server at start.

Skipped without the `s3` extra (s3fs) and moto's server (moto[server], with boto3)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.conftest import SMALL_MLP, generate_models
from tests.integration.object_stores import local_store
from tests.integration.server import running_server
from tests.integration.test_model_control import Traffic, index, wait_for

pytest.importorskip("s3fs", reason="the s3 extra is not installed")
pytest.importorskip("moto.server", reason="moto[server] is not installed")
boto3 = pytest.importorskip("boto3")


def _moto(port: int) -> list[str]:
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]


def _aws_env(endpoint: str, key: str = "testing") -> dict[str, str]:
    """The standard AWS variables only, and no config file of this machine's."""
    return {
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with local_store(_moto) as endpoint:
        yield endpoint


@pytest.fixture
def env(s3_endpoint: str) -> dict[str, str]:
    return _aws_env(s3_endpoint)


class Bucket:
    """A fresh bucket, and uploads into it under `models/`."""

    def __init__(self, endpoint: str) -> None:
        self.name = f"inferd-{uuid.uuid4().hex[:12]}"
        self.client: Any = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        self.client.create_bucket(Bucket=self.name)
        self.url = f"s3://{self.name}/models"

    def upload(self, folder: Path, under: str = "", **extra: str) -> None:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            key = f"models/{under}{path.relative_to(folder).as_posix()}"
            self.client.put_object(Bucket=self.name, Key=key, Body=path.read_bytes(), **extra)

    def put(self, key: str, body: bytes, **extra: str) -> None:
        self.client.put_object(Bucket=self.name, Key=f"models/{key}", Body=body, **extra)

    def remove(self, prefix: str) -> None:
        listing = self.client.list_objects_v2(Bucket=self.name, Prefix=f"models/{prefix}")
        for item in listing.get("Contents", []):
            self.client.delete_object(Bucket=self.name, Key=item["Key"])


@pytest.fixture
def bucket(s3_endpoint: str, model_repository: Path) -> Bucket:
    """A bucket holding the example models (`simple` with its config, `mlp` without)."""
    created = Bucket(s3_endpoint)
    created.upload(model_repository)
    return created


def infer_simple(client: httpclient.InferenceServerClient, model: str = "simple") -> np.ndarray:
    inputs = [httpclient.InferInput(f"INPUT{i}", [1, 16], "INT32") for i in (0, 1)]
    inputs[0].set_data_from_numpy(np.arange(16, dtype=np.int32).reshape(1, 16))
    inputs[1].set_data_from_numpy(np.ones((1, 16), dtype=np.int32))
    result: np.ndarray = client.infer(model, inputs).as_numpy("OUTPUT0")
    return result


def infer_mlp(client: httpclient.InferenceServerClient) -> np.ndarray:
    inputs = [httpclient.InferInput("input", [1, 8], "FP32")]
    inputs[0].set_data_from_numpy(np.ones((1, 8), dtype=np.float32))
    result: np.ndarray = client.infer("mlp", inputs).as_numpy("output")
    return result


def cached_model_files(cache: Path) -> list[str]:
    return sorted(p.relative_to(p.parents[2]).as_posix() for p in cache.rglob("model.onnx"))


def test_serves_models_from_a_bucket_through_the_download_cache(
    bucket: Bucket, env: dict[str, str], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    with running_server(bucket.url, "--model-cache-dir", str(cache), env=env) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        assert infer_simple(client).tolist() == [list(range(1, 17))]
        assert infer_mlp(client).shape == (1, SMALL_MLP[-1])
        assert cached_model_files(cache) == ["mlp/1/model.onnx", "simple/1/model.onnx"]
    assert cached_model_files(cache) == []  # cleaned when the models were unloaded


def test_poll_mode_follows_the_bucket_under_traffic(
    bucket: Bucket, env: dict[str, str], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    args = ("--model-control-mode", "poll", "--repository-poll-secs", "0.2")
    with running_server(bucket.url, *args, "--model-cache-dir", str(cache), env=env) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        first_mlp = infer_mlp(client)
        with Traffic(server.http_url, ["simple", "mlp"]) as traffic:
            # A new model.
            simple = tmp_path / "simple"
            generate_models.simple_model(simple / "1" / "model.onnx")
            bucket.upload(simple, "added/")
            wait_for(lambda: client.is_model_ready("added"))

            # A new version: served instead of version 1 (the default policy is latest 1).
            bucket.put("simple/2/model.onnx", (simple / "1" / "model.onnx").read_bytes())
            wait_for(lambda: client.get_model_metadata("simple")["versions"] == ["2"])

            # A model file replaced in place.
            other = tmp_path / "other.onnx"
            generate_models.mlp_model(other, SMALL_MLP, seed=1)
            bucket.put("mlp/1/model.onnx", other.read_bytes())
            wait_for(lambda: not np.allclose(infer_mlp(client), first_mlp))

            # A model removed.
            bucket.remove("added/")
            wait_for(lambda: not client.is_model_ready("added"))

            # A version whose download fails (an archived object cannot be read):
            # version 2 keeps serving, and the model's state says why.
            bucket.put("simple/3/model.onnx", b"archived", StorageClass="GLACIER")
            wait_for(lambda: "downloading version 3" in index(server)["simple"].get("reason", ""))
            served = dict(traffic.done)
        assert traffic.failures == []
        assert min(served.values()) > 0, served
        row = index(server)["simple"]
        assert (row["state"], row["version"]) == ("READY", "2")
        assert "InvalidObjectState" in row["reason"] or "storage class" in row["reason"]
        assert client.get_model_metadata("simple")["versions"] == ["2"]
        assert "added" not in index(server)
        # Only what serves is in the cache: the replaced, removed and failed ones are gone.
        assert cached_model_files(cache) == ["mlp/1/model.onnx", "simple/2/model.onnx"]


def without_endpoint_variable(env: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name != "AWS_ENDPOINT_URL"}


def test_explicit_load_and_unload(
    bucket: Bucket, env: dict[str, str], s3_endpoint: str, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    args = ("--model-control-mode", "explicit", "--model-cache-dir", str(cache))
    args += ("--s3-endpoint-url", s3_endpoint)  # the flag, rather than AWS_ENDPOINT_URL
    with running_server(bucket.url, *args, env=without_endpoint_variable(env)) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        assert not client.is_model_ready("mlp") and index(server)["mlp"]["state"] == "UNKNOWN"
        assert cached_model_files(cache) == []
        client.load_model("mlp")
        assert infer_mlp(client).shape == (1, SMALL_MLP[-1])
        assert cached_model_files(cache) == ["mlp/1/model.onnx"]
        client.unload_model("mlp")
        assert not client.is_model_ready("mlp")
        assert cached_model_files(cache) == []
        with pytest.raises(httpclient.InferenceServerException, match="not in the repository"):
            client.load_model("absent")


def test_a_folder_and_a_bucket_together_and_a_name_in_both(
    bucket: Bucket, env: dict[str, str], s3_endpoint: str, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    generate_models.simple_model(local / "simple" / "1" / "model.onnx")  # also in the bucket
    generate_models.simple_model(local / "local_simple" / "1" / "model.onnx")
    # Triton's URL form for an S3-compatible store: its host and port first.
    url = bucket.url.replace("s3://", f"s3://{s3_endpoint.removeprefix('http://')}/")
    args = ("--model-repository", url, "--no-strict-readiness")
    with running_server(local, *args, env=without_endpoint_variable(env)) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        assert infer_simple(client, "local_simple").tolist() == [list(range(1, 17))]
        assert infer_mlp(client).shape == (1, SMALL_MLP[-1])
        row = index(server)["simple"]
        assert row["state"] == "UNAVAILABLE"
        assert f"more than one model repository ({local}, {url})" in row["reason"]
        assert "model 'simple' is in more than one model repository" in server.log_text()


def _serve_until_exit(repository: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "inferd", "serve", "--model-repository", repository]
    ports = ["--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        command + ports, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


def test_a_missing_bucket_stops_the_server_at_start(env: dict[str, str]) -> None:
    finished = _serve_until_exit("s3://no-such-bucket/models", env)
    assert finished.returncode == 1
    assert "cannot serve: model repository 's3://no-such-bucket/models' cannot be listed" in (
        finished.stderr
    )
    assert "The specified bucket does not exist" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_refused_or_missing_credentials_stop_the_server_at_start(s3_endpoint: str) -> None:
    # A second server that checks credentials from its first request on.
    with local_store(_moto, {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as checking:
        refused = _serve_until_exit("s3://bucket/models", _aws_env(checking, "wrong"))
    assert refused.returncode == 1
    assert "Access Key Id you provided does not exist" in refused.stderr

    no_credentials = {k: v for k, v in _aws_env(s3_endpoint).items() if "_KEY" not in k}
    missing = _serve_until_exit("s3://bucket/models", no_credentials)
    assert missing.returncode == 1
    assert "Unable to locate credentials" in missing.stderr
