"""Repositories in Azure Blob Storage and Google Cloud Storage, against their local emulators
(Azurite; gcp-storage-emulator) and the real `inferd serve` reading them through adlfs and
gcsfs, with credentials and endpoints from each cloud's standard variables: load, then a
poll-mode reload. What the stores share (downloads, cache, errors) is tested on S3 in
test_object_storage.py.

Each cloud is skipped without its extra or its emulator: Azurite is `azurite-blob` on the
PATH (`npm install -g azurite`); the GCS emulator is the `gcp-storage-emulator` package."""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.conftest import generate_models
from tests.integration.infer_helpers import infer
from tests.integration.object_stores import local_store
from tests.integration.server import running_server
from tests.integration.test_model_control import wait_for

fsspec = pytest.importorskip("fsspec")

# Azurite's documented development account (public, the same in every copy of Azurite).
_AZURITE_ACCOUNT = "devstoreaccount1"
_AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@dataclass
class Store:
    scheme: str  # of the repository URL
    env: dict[str, str]  # what the server is given: the cloud's standard variables
    files: Any  # an fsspec filesystem on the store, to upload with


@pytest.fixture(scope="module")
def azure() -> Iterator[Store]:
    pytest.importorskip("adlfs", reason="the azure extra is not installed")
    azurite = shutil.which("azurite-blob")
    if azurite is None:
        pytest.skip("azurite-blob is not on the PATH")

    def command(port: int) -> list[str]:
        return [azurite, "--blobHost", "127.0.0.1", "--blobPort", str(port),
                "--inMemoryPersistence", "--disableTelemetry", "--silent",
                "--skipApiVersionCheck"]  # fmt: skip

    with local_store(command) as endpoint:
        connection = (
            f"DefaultEndpointsProtocol=http;AccountName={_AZURITE_ACCOUNT};"
            f"AccountKey={_AZURITE_KEY};BlobEndpoint={endpoint}/{_AZURITE_ACCOUNT};"
        )
        files = fsspec.filesystem("az", connection_string=connection, skip_instance_cache=True)
        yield Store("az", {"AZURE_STORAGE_CONNECTION_STRING": connection}, files)


@pytest.fixture(scope="module")
def gcs() -> Iterator[Store]:
    pytest.importorskip("gcsfs", reason="the gcs extra is not installed")
    pytest.importorskip("gcp_storage_emulator", reason="gcp-storage-emulator is not installed")

    def command(port: int) -> list[str]:
        emulator = "from gcp_storage_emulator.__main__ import main; main()"
        return [sys.executable, "-c", emulator, "start", "--host", "127.0.0.1",
                "--port", str(port), "--in-memory"]  # fmt: skip

    with local_store(command) as endpoint, pytest.MonkeyPatch.context() as patch:
        patch.setenv("STORAGE_EMULATOR_HOST", endpoint)  # for the uploads here
        files = fsspec.filesystem("gs", skip_instance_cache=True, use_listings_cache=False)
        yield Store("gs", {"STORAGE_EMULATOR_HOST": endpoint}, files)


ONES = np.ones((1, 16), dtype=np.int32)


@pytest.mark.parametrize("cloud", ["azure", "gcs"])
def test_serves_and_follows_a_bucket(
    cloud: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store: Store = request.getfixturevalue(cloud)
    bucket = f"inferd-{uuid.uuid4().hex[:12]}"
    store.files.mkdir(bucket)
    model = tmp_path / "model.onnx"
    generate_models.simple_model(model)
    store.files.pipe_file(
        f"{bucket}/models/simple/config.pbtxt", generate_models.SIMPLE_CONFIG.encode()
    )
    store.files.pipe_file(f"{bucket}/models/simple/1/model.onnx", model.read_bytes())

    args = ("--model-control-mode", "poll", "--repository-poll-secs", "0.2")
    url = f"{store.scheme}://{bucket}/models"
    with running_server(url, *args, env=store.env) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        answer = infer(client, httpclient, "simple", {"INPUT0": ONES, "INPUT1": ONES})
        assert answer.as_numpy("OUTPUT0").tolist() == [[2] * 16]
        store.files.pipe_file(f"{bucket}/models/simple/2/model.onnx", model.read_bytes())
        wait_for(lambda: client.get_model_metadata("simple")["versions"] == ["2"])
        assert client.is_model_ready("simple", "2")
