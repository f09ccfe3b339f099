"""TLS and mutual TLS on the HTTP, metrics and gRPC ports, with certificates made in the test and
tritonclient's own TLS options."""

from __future__ import annotations

import http.client
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.grpc_helpers import A, B
from tests.integration.infer_helpers import infer
from tests.integration.server import RunningServer, running_server
from tests.integration.tls_certs import Certificates, Pair, make_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def _tls_flags(certs: Certificates, *, mutual: bool) -> list[str]:
    flags = []
    for protocol in ("http", "grpc"):
        flags += [
            f"--{protocol}-use-ssl",
            f"--{protocol}-server-cert", str(certs.server.cert),
            f"--{protocol}-server-key", str(certs.server.key),
        ]  # fmt: skip
        if mutual:
            flags += [f"--{protocol}-root-cert", str(certs.ca), f"--{protocol}-use-ssl-mutual"]
    return flags


@pytest.fixture(scope="module")
def tls_server(model_repository: Path, certs: Certificates) -> Iterator[RunningServer]:
    with running_server(model_repository, *_tls_flags(certs, mutual=False)) as running:
        yield running


@pytest.fixture(scope="module")
def mutual_server(model_repository: Path, certs: Certificates) -> Iterator[RunningServer]:
    with running_server(model_repository, *_tls_flags(certs, mutual=True)) as running:
        yield running


def _http(server: RunningServer, ca: Path | None, client: Pair | None = None) -> Any:
    """tritonclient.http over TLS trusting `ca` (plaintext when None), with `client`'s cert."""
    if ca is None:
        return httpclient.InferenceServerClient(server.http_url)
    options = {"ca_certs": str(ca)}
    if client is not None:
        options |= {"certfile": str(client.cert), "keyfile": str(client.key)}
    return httpclient.InferenceServerClient(server.http_url, ssl=True, ssl_options=options)


def _grpc(server: RunningServer, ca: Path | None, client: Pair | None = None) -> Any:
    if ca is None:
        return grpcclient.InferenceServerClient(server.grpc_url)
    return grpcclient.InferenceServerClient(
        server.grpc_url,
        ssl=True,
        root_certificates=str(ca),
        private_key=str(client.key) if client else None,
        certificate_chain=str(client.cert) if client else None,
    )


def _assert_infers(client: Any, module: Any) -> None:
    assert client.is_server_ready()
    result = infer(client, module, "simple", {"INPUT0": A, "INPUT1": B})
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), A + B)


def _refused_http(client: Any) -> None:
    # The handshake fails in the client's socket layer (an ssl or socket error), or a plaintext
    # request sees its connection closed without an answer.
    with pytest.raises((OSError, http.client.HTTPException)):
        client.is_server_ready()


def _refused_grpc(client: Any) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.is_server_ready(client_timeout=10)
    assert caught.value.status() in ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED")


def test_http_over_tls(tls_server: RunningServer, certs: Certificates) -> None:
    _assert_infers(_http(tls_server, certs.ca), httpclient)
    assert "https://127.0.0.1" in tls_server.log_text()


def test_grpc_over_tls(tls_server: RunningServer, certs: Certificates) -> None:
    _assert_infers(_grpc(tls_server, certs.ca), grpcclient)


def test_metrics_port_shares_the_http_tls(tls_server: RunningServer, certs: Certificates) -> None:
    context = ssl.create_default_context(cafile=str(certs.ca))
    url = tls_server.metrics_url.replace("http://", "https://")
    with urllib.request.urlopen(url, context=context, timeout=10) as answer:
        assert b"nv_inference_count" in answer.read()
    with pytest.raises(OSError):
        urllib.request.urlopen(tls_server.metrics_url, timeout=10)


def test_a_server_certificate_from_another_ca_is_refused(
    tls_server: RunningServer, certs: Certificates
) -> None:
    _refused_http(_http(tls_server, certs.other_ca))
    _refused_grpc(_grpc(tls_server, certs.other_ca))


def test_plaintext_to_a_tls_port_is_refused(tls_server: RunningServer) -> None:
    _refused_http(_http(tls_server, None))
    _refused_grpc(_grpc(tls_server, None))


def test_mutual_tls_with_a_client_certificate(
    mutual_server: RunningServer, certs: Certificates
) -> None:
    _assert_infers(_http(mutual_server, certs.ca, certs.client), httpclient)
    _assert_infers(_grpc(mutual_server, certs.ca, certs.client), grpcclient)


def test_mutual_tls_refuses_a_client_without_a_certificate(
    mutual_server: RunningServer, certs: Certificates
) -> None:
    _refused_http(_http(mutual_server, certs.ca))
    _refused_grpc(_grpc(mutual_server, certs.ca))


def test_mutual_tls_refuses_a_certificate_of_another_ca(
    mutual_server: RunningServer, certs: Certificates
) -> None:
    _refused_http(_http(mutual_server, certs.ca, certs.stranger))
    _refused_grpc(_grpc(mutual_server, certs.ca, certs.stranger))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--grpc-use-ssl"], "--grpc-use-ssl needs --grpc-server-cert"),
        (
            ["--http-use-ssl", "--http-server-cert", "{missing}", "--http-server-key", "{key}"],
            "--http-server-cert: no such file",
        ),
        (
            ["--grpc-use-ssl", "--grpc-server-cert", "{cert}", "--grpc-server-key", "{key}",
             "--grpc-use-ssl-mutual"],
            "--grpc-use-ssl-mutual needs --grpc-root-cert",
        ),
        (
            ["--http-use-ssl", "--http-server-cert", "{key}", "--http-server-key", "{key}"],
            "are not a PEM certificate and its private key",
        ),
        (["--http-server-cert", "{cert}"], "--http-server-cert is given without --http-use-ssl"),
    ],
)  # fmt: skip
def test_a_tls_mistake_stops_the_server_at_start(
    tmp_path: Path, certs: Certificates, flags: list[str], message: str
) -> None:
    paths = {"cert": certs.server.cert, "key": certs.server.key, "missing": tmp_path / "nope.pem"}
    command = [sys.executable, "-m", "inferd", "serve", "--model-repository", str(tmp_path)]
    command += [flag.format(**paths) for flag in flags]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert message in done.stderr
