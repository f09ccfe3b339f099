"""SIGHUP reads the certificates again: new connections get the new one on the HTTP, metrics
and gRPC ports, open connections go on, and files that cannot be served keep the old one."""

from __future__ import annotations

import http.client
import json
import queue
import shutil
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from tests.integration.grpc_helpers import A, B, output, simple_request
from tests.integration.server import RunningServer, running_server
from tests.integration.tls_certs import Certificates, make_certificates

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import serialization  # noqa: E402

_RELOADED = "SIGHUP: the {} port serves the certificate"
_KEPT = "SIGHUP: the {} port keeps its certificate"
_PORTS = ("HTTP", "metrics", "gRPC")


@pytest.fixture
def two_cas(tmp_path: Path) -> tuple[Certificates, Certificates]:
    folders = tmp_path / "a", tmp_path / "b"
    for folder in folders:
        folder.mkdir()
    return make_certificates(folders[0]), make_certificates(folders[1])


def _install(certs: Certificates, folder: Path) -> tuple[Path, Path]:
    """Copy `certs`' server pair to the files the server is started with."""
    cert, key = folder / "served.pem", folder / "served.key"
    shutil.copyfile(certs.server.cert, cert)
    shutil.copyfile(certs.server.key, key)
    return cert, key


def _tls_flags(cert: Path, key: Path) -> list[str]:
    flags = []
    for protocol in ("http", "grpc"):
        flags += [f"--{protocol}-use-ssl", f"--{protocol}-server-cert", str(cert),
                  f"--{protocol}-server-key", str(key)]  # fmt: skip
    return flags


def _der(certs: Certificates) -> bytes:
    cert = x509.load_pem_x509_certificate(certs.server.cert.read_bytes())
    return bytes(cert.public_bytes(serialization.Encoding.DER))


def _context(*cas: Certificates) -> ssl.SSLContext:
    context = ssl.create_default_context()
    for certs in cas:
        context.load_verify_locations(str(certs.ca))
    return context


def _presented(port: int, context: ssl.SSLContext, alpn: str = "http/1.1") -> bytes:
    """The certificate a new TLS connection to `port` is shown."""
    context.set_alpn_protocols([alpn])
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with raw, context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        presented = tls.getpeercert(binary_form=True)
    assert presented is not None
    return presented


def _get(connection: http.client.HTTPConnection, path: str) -> int:
    connection.request("GET", path)
    answer = connection.getresponse()
    answer.read()
    return answer.status


def _sighup(server: RunningServer, *lines: str) -> None:
    """SIGHUP, then wait until the log has one more line containing each of `lines`."""

    def counts() -> list[int]:
        return [sum(line in logged for logged in server.log) for line in lines]

    wanted = [count + 1 for count in counts()]
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while any(count < want for count, want in zip(counts(), wanted, strict=True)):
        assert time.monotonic() < deadline, server.log_text()
        time.sleep(0.05)


class _Stream:
    """One ModelStreamInfer stream, kept open: a request in, its response out."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._requests: queue.Queue[Any] = queue.Queue()
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        self._responses = stub.ModelStreamInfer(iter(self._requests.get, None), timeout=60)

    def infer(self) -> Any:
        self._requests.put(simple_request())
        answer: service_pb2.ModelStreamInferResponse = next(self._responses)
        assert not answer.error_message, answer.error_message
        return output(answer.infer_response, "OUTPUT0")

    def close(self) -> None:
        self._requests.put(None)


@pytest.fixture
def reloading(
    model_repository: Path, two_cas: tuple[Certificates, Certificates], tmp_path: Path
) -> Iterator[tuple[RunningServer, Path, Path]]:
    cert, key = _install(two_cas[0], tmp_path)
    with running_server(model_repository, *_tls_flags(cert, key)) as server:
        yield server, cert, key


def test_sighup_serves_the_new_certificate_and_keeps_connections(
    reloading: tuple[RunningServer, Path, Path], two_cas: tuple[Certificates, Certificates]
) -> None:
    server, cert, _ = reloading
    old, new = two_cas
    metrics_port = server.ports["metrics"]
    grpc_port = server.ports["gRPC"]
    trust_both = _context(old, new)
    for port, alpn in ((server.http_port, "http/1.1"), (metrics_port, "http/1.1"),
                       (grpc_port, "h2")):  # fmt: skip
        assert _presented(port, _context(old, new), alpn) == _der(old)
    kept = http.client.HTTPSConnection("127.0.0.1", server.http_port, context=trust_both)
    assert _get(kept, "/v2/health/ready") == 200
    kept_socket = kept.sock
    # A request half sent across the reload: the connection cannot idle out meanwhile.
    body = json.dumps({"inputs": [
        {"name": name, "shape": [1, 16], "datatype": "INT32", "data": array.ravel().tolist()}
        for name, array in (("INPUT0", A), ("INPUT1", B))
    ]}).encode()  # fmt: skip
    kept.putrequest("POST", "/v2/models/simple/infer")
    kept.putheader("Content-Length", str(len(body)))
    kept.endheaders()
    kept.send(body[:10])
    credentials = grpc.ssl_channel_credentials(old.ca.read_bytes() + new.ca.read_bytes())
    with grpc.secure_channel(server.grpc_url, credentials) as channel:
        stream = _Stream(channel)
        assert (stream.infer() == A + B).all()

        _install(new, cert.parent)
        _sighup(server, *(_RELOADED.format(name) for name in _PORTS))

        # Open connections go on: the same keep-alive socket, the same gRPC stream.
        kept.send(body[10:])
        answer = kept.getresponse()
        assert answer.status == 200
        assert json.loads(answer.read())["outputs"][0]["data"] == (A + B).ravel().tolist()
        assert _get(kept, "/v2/health/ready") == 200
        assert kept.sock is kept_socket
        assert (stream.infer() == A + B).all()
        stream.close()
    kept.close()
    # New connections are shown the new certificate.
    for port, alpn in ((server.http_port, "http/1.1"), (metrics_port, "http/1.1"),
                       (grpc_port, "h2")):  # fmt: skip
        assert _presented(port, _context(new), alpn) == _der(new)
    only_new = grpc.ssl_channel_credentials(new.ca.read_bytes())
    with grpc.secure_channel(server.grpc_url, only_new) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=30).ready


def test_files_that_cannot_be_served_keep_the_old_certificate(
    reloading: tuple[RunningServer, Path, Path], two_cas: tuple[Certificates, Certificates]
) -> None:
    server, cert, key = reloading
    old, new = two_cas
    shutil.copyfile(new.server.cert, cert)  # the new certificate, but still the old key
    _sighup(server, *(_KEPT.format(name) for name in _PORTS))
    assert "ERROR" in next(line for line in server.log if _KEPT.format("HTTP") in line)
    key.write_text("not a key")
    _sighup(server, *(_KEPT.format(name) for name in _PORTS))
    assert server.process.poll() is None
    for port, alpn in ((server.http_port, "http/1.1"), (server.ports["metrics"], "http/1.1"),
                       (server.ports["gRPC"], "h2")):  # fmt: skip
        assert _presented(port, _context(old, new), alpn) == _der(old)


def test_sighup_without_tls_changes_nothing(model_repository: Path) -> None:
    with running_server(model_repository) as server:
        _sighup(server, "SIGHUP: no TLS certificate to reload")
        connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
        try:
            assert _get(connection, "/v2/health/ready") == 200
        finally:
            connection.close()
        assert server.process.poll() is None
