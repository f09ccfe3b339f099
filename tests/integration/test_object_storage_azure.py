"""A model repository in Azure Blob Storage, against Azurite (Microsoft's Blob Storage
emulator, started here on 127.0.0.1) and the real `inferd serve` reading it through adlfs,
with credentials from the standard AZURE_STORAGE_CONNECTION_STRING: load and poll-mode
reload. The S3 tests (test_object_storage.py) cover the rest, which is shared.

Skipped without the `azure` extra (adlfs) or without `azurite-blob` on the PATH
(`npm install -g azurite`)."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.error import HTTPError

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.conftest import generate_models
from tests.integration.infer_helpers import infer
from tests.integration.server import free_port, running_server
from tests.integration.test_model_control import wait_for

fsspec = pytest.importorskip("fsspec")
pytest.importorskip("adlfs", reason="the azure extra is not installed")
AZURITE = shutil.which("azurite-blob")
pytestmark = pytest.mark.skipif(AZURITE is None, reason="azurite-blob is not on the PATH")
ONES = np.ones((1, 16), dtype=np.int32)

# Azurite's documented development account (public, the same in every copy of Azurite).
_ACCOUNT = "devstoreaccount1"
_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@pytest.fixture(scope="module")
def connection_string() -> Iterator[str]:
    assert AZURITE is not None
    port = free_port()
    process = subprocess.Popen(
        [AZURITE, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
         "--disableTelemetry", "--silent", "--skipApiVersionCheck"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}/{_ACCOUNT}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1).close()
        except HTTPError:
            break  # it answers (an anonymous request is refused)
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("azurite did not start") from None
            time.sleep(0.1)
        else:
            break
    yield (
        f"DefaultEndpointsProtocol=http;AccountName={_ACCOUNT};AccountKey={_KEY};"
        f"BlobEndpoint={endpoint};"
    )
    process.terminate()
    process.wait(10)


def test_serves_and_follows_a_container(connection_string: str, tmp_path: Path) -> None:
    container = f"inferd-{uuid.uuid4().hex[:12]}"
    blobs = fsspec.filesystem("az", connection_string=connection_string, skip_instance_cache=True)
    blobs.mkdir(container)
    model = tmp_path / "model.onnx"
    generate_models.simple_model(model)
    blobs.pipe_file(
        f"{container}/models/simple/config.pbtxt", generate_models.SIMPLE_CONFIG.encode()
    )
    blobs.pipe_file(f"{container}/models/simple/1/model.onnx", model.read_bytes())

    env = {"AZURE_STORAGE_CONNECTION_STRING": connection_string}
    args = ("--model-control-mode", "poll", "--repository-poll-secs", "0.2")
    with running_server(f"az://{container}/models", *args, env=env) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        answer = infer(client, httpclient, "simple", {"INPUT0": ONES, "INPUT1": ONES})
        assert answer.as_numpy("OUTPUT0").tolist() == [[2] * 16]
        blobs.pipe_file(f"{container}/models/simple/2/model.onnx", model.read_bytes())
        wait_for(lambda: client.get_model_metadata("simple")["versions"] == ["2"])
        assert client.is_model_ready("simple", "2")
