"""What the scikit-learn, XGBoost and LightGBM tests share: calling a model over both
protocols, concurrent batch-1 clients, rejected requests and model states."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.http_helpers import post_json
from tests.integration.infer_helpers import infer_inputs
from tests.integration.server import RunningServer

Arrays = Mapping[str, np.ndarray]


def infer_http_and_grpc(
    server: RunningServer, model: str, arrays: Arrays, outputs: list[str] | None = None
) -> list[dict[str, np.ndarray]]:
    """The model's answer over HTTP, then over gRPC: output name -> array."""
    answers = []
    for module, url in ((httpclient, server.http_url), (grpcclient, server.grpc_url)):
        client = module.InferenceServerClient(url)
        try:
            requested = (
                None if outputs is None else [module.InferRequestedOutput(n) for n in outputs]
            )
            result = client.infer(model, infer_inputs(module, arrays), outputs=requested)
            names = outputs or [o["name"] for o in _outputs(result)]
            answers.append({name: result.as_numpy(name) for name in names})
        finally:
            client.close()
    return answers


def _outputs(result: Any) -> list[dict[str, Any]]:
    response = result.get_response()
    if isinstance(response, dict):
        return list(response["outputs"])
    return [{"name": output.name} for output in response.outputs]


def assert_batched_under_concurrency(
    server: RunningServer,
    model: str,
    rows: np.ndarray,
    output: str,
    expected: Callable[[np.ndarray], np.ndarray],
) -> None:
    """Eight clients send one row per request; every answer is the library's, and the
    statistics show batches of more than one request."""
    threads = 8

    def worker(index: int) -> list[np.ndarray]:
        client = httpclient.InferenceServerClient(server.http_url)
        try:
            return [
                client.infer(
                    model, infer_inputs(httpclient, {"input__0": rows[i : i + 1]})
                ).as_numpy(output)
                for i in range(index, len(rows), threads)
            ]
        finally:
            client.close()  # in this thread: tritonclient.http's gevent pool belongs to it

    with ThreadPoolExecutor(threads) as pool:
        answers = list(pool.map(worker, range(threads)))
    order = [i for index in range(threads) for i in range(index, len(rows), threads)]
    got = np.concatenate([a for answer in answers for a in answer])
    np.testing.assert_allclose(got, expected(rows[order]), rtol=1e-6, atol=1e-6)
    client = httpclient.InferenceServerClient(server.http_url)
    stats = client.get_inference_statistics(model)["model_stats"][0]
    client.close()
    assert int(stats["inference_count"]) == len(rows)
    assert max(int(batch["batch_size"]) for batch in stats["batch_stats"]) > 1


def assert_rejected(server: RunningServer, model: str, arrays: Arrays, match: str) -> None:
    """HTTP 400 and gRPC INVALID_ARGUMENT, each with a message matching `match`."""
    client = httpclient.InferenceServerClient(server.http_url)
    with pytest.raises(InferenceServerException, match=match) as http_error:
        client.infer(model, infer_inputs(httpclient, arrays))
    client.close()
    assert http_error.value.status() == "400"
    with (
        grpcclient.InferenceServerClient(server.grpc_url) as grpc_client,
        pytest.raises(InferenceServerException, match=match) as grpc_error,
    ):
        grpc_client.infer(model, infer_inputs(grpcclient, arrays))
    assert grpc_error.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)


def model_states(server: RunningServer) -> dict[str, tuple[str, str]]:
    """Model name -> (state, reason) from the repository index."""
    _, index = post_json(server.http_port, "/v2/repository/index", {})
    return {m["name"]: (m["state"], m.get("reason", "")) for m in index}


def io_config(server: RunningServer, model: str) -> tuple[list[Any], list[Any], int]:
    """(name, data_type, dims) of the inputs and outputs, and max_batch_size."""
    client = httpclient.InferenceServerClient(server.http_url)
    config = client.get_model_config(model)
    client.close()
    tensors = [
        [(t["name"], t["data_type"], t["dims"]) for t in config[kind]]
        for kind in ("input", "output")
    ]
    return tensors[0], tensors[1], int(config["max_batch_size"])
