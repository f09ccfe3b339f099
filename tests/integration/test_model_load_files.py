"""Model files sent in a load request (Triton's repository extension), through the real
server and tritonclient (HTTP and gRPC): an ONNX model made here is sent, served and inferred;
names that could leave the model's folder, too much data, files without a config and a server
without --allow-model-load-files are refused as client errors; the private folder the files
were written to goes when the model is unloaded or loaded again."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import generate_models  # examples/, put on sys.path by tests/conftest.py
from tests.integration.server import RunningServer, running_server

LIMIT = 64 * 1024
CONFIG = json.dumps(
    {
        "name": "sent",
        "platform": "onnxruntime_onnx",
        "max_batch_size": 8,
        "input": [
            {"name": "INPUT0", "data_type": "TYPE_INT32", "dims": [16]},
            {"name": "INPUT1", "data_type": "TYPE_INT32", "dims": [16]},
        ],
        "output": [
            {"name": "OUTPUT0", "data_type": "TYPE_INT32", "dims": [16]},
            {"name": "OUTPUT1", "data_type": "TYPE_INT32", "dims": [16]},
        ],
    }
)
EXPLICIT = ("--model-control-mode", "explicit")


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("made") / "model.onnx"
    generate_models.simple_model(path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def temp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's TMPDIR, so the test can see the folders it writes."""
    return tmp_path_factory.mktemp("server-tmp")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, temp_dir: Path) -> Iterator[RunningServer]:
    repository = tmp_path_factory.mktemp("empty-repository")
    args = (*EXPLICIT, "--allow-model-load-files", "--model-load-files-max-bytes", str(LIMIT))
    with running_server(repository, *args, env={"TMPDIR": str(temp_dir)}) as running:
        yield running


@pytest.fixture(params=["http", "grpc"])
def client(request: pytest.FixtureRequest, server: RunningServer) -> Iterator[Any]:
    module: Any = httpclient if request.param == "http" else grpcclient
    connection = module.InferenceServerClient(
        server.http_url if module is httpclient else server.grpc_url
    )
    yield connection
    connection.close()


def _uploads(temp_dir: Path) -> list[Path]:
    return sorted(temp_dir.glob("inferd-model-files-*"))


def _infer_sum(client: Any) -> np.ndarray:
    module: Any = httpclient if isinstance(client, httpclient.InferenceServerClient) else grpcclient
    ones = np.arange(16, dtype=np.int32).reshape(1, 16)
    inputs = [module.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(ones)
    return client.infer("sent", inputs).as_numpy("OUTPUT0")  # type: ignore[no-any-return]


def test_a_model_sent_as_files_serves_and_its_folder_goes_at_unload(
    client: Any, model_bytes: bytes, temp_dir: Path
) -> None:
    client.load_model("sent", config=CONFIG, files={"file:1/model.onnx": model_bytes})
    try:
        assert client.is_model_ready("sent")
        np.testing.assert_array_equal(_infer_sum(client), 2 * np.arange(16).reshape(1, 16))
        (root,) = _uploads(temp_dir)
        assert stat.S_IMODE(root.stat().st_mode) == 0o700  # private to the server's user
        assert (root / "sent" / "1" / "model.onnx").read_bytes() == model_bytes
        # Loaded again with new files: the new folder replaces the old one.
        client.load_model("sent", config=CONFIG, files={"file:2/model.onnx": model_bytes})
        (again,) = _uploads(temp_dir)
        assert again != root and not root.exists()
        assert (again / "sent" / "2" / "model.onnx").is_file()
    finally:
        client.unload_model("sent")
    assert _uploads(temp_dir) == []
    assert not client.is_model_ready("sent")


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("file:../1/model.onnx", "must stay within model directory"),
        ("file:1/../../model.onnx", "must stay within model directory"),
        ("file:/tmp/model.onnx", "absolute path"),
        ("file:1//model.onnx", "must stay within model directory"),
        ("file:1/" + "m" * 256, "longer than 255 bytes"),
        ("file:", "names no file"),
    ],
)
def test_a_file_name_that_could_leave_the_folder_is_refused(
    client: Any, name: str, words: str, temp_dir: Path
) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.load_model("sent", config=CONFIG, files={name: b"x"})
    assert caught.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    assert words in str(caught.value)
    assert _uploads(temp_dir) == []


def test_more_bytes_than_the_limit_are_refused(client: Any, temp_dir: Path) -> None:
    files = {"file:1/model.onnx": b"x" * (LIMIT // 2), "file:1/other.bin": b"y" * (LIMIT // 2 + 1)}
    with pytest.raises(InferenceServerException, match="--model-load-files-max-bytes") as caught:
        client.load_model("sent", config=CONFIG, files=files)
    assert caught.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    assert _uploads(temp_dir) == []


def test_files_without_a_config_are_refused_in_tritons_words(
    client: Any, model_bytes: bytes
) -> None:
    with pytest.raises(InferenceServerException, match="'config' must be specified") as caught:
        client.load_model("sent", files={"file:1/model.onnx": model_bytes})
    assert caught.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    # Triton's lifecycle QA (test_file_override) looks for this phrase.
    assert caught.value.message().startswith(
        "failed to load 'sent', failed to poll from model repository: "
    )


def test_files_that_do_not_load_are_worded_as_tritons_failed_load(client: Any) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.load_model("sent", config=CONFIG, files={"file:1/model.onnx": b"not onnx"})
    assert caught.value.message().startswith(
        "load failed for model 'sent': version 1 is at UNAVAILABLE state: "
    )


def test_files_that_do_not_load_leave_nothing_behind(client: Any, temp_dir: Path) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.load_model("sent", config=CONFIG, files={"file:1/model.onnx": b"not onnx"})
    assert caught.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    assert _uploads(temp_dir) == []


def test_a_server_without_the_flag_refuses_files(
    tmp_path: Path, model_bytes: bytes, temp_dir: Path
) -> None:
    with running_server(tmp_path, *EXPLICIT, env={"TMPDIR": str(temp_dir)}) as plain:
        for connection in (
            httpclient.InferenceServerClient(plain.http_url),
            grpcclient.InferenceServerClient(plain.grpc_url),
        ):
            with pytest.raises(
                InferenceServerException, match="--allow-model-load-files"
            ) as caught:
                connection.load_model(
                    "sent", config=CONFIG, files={"file:1/model.onnx": model_bytes}
                )
            assert caught.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
            connection.close()
    assert _uploads(temp_dir) == []
