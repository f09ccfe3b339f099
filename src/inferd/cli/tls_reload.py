"""Certificates read again on SIGHUP, without dropping a connection.

HTTP and metrics ports: the new chain is loaded into the port's live `ssl.SSLContext`, which
new handshakes use while open connections keep theirs. gRPC: its credentials ask a fetcher
before each handshake, which hands over the new configuration once after a reload. Files that
cannot be served (a missing file, a key that does not match) keep the old certificate, and the
error is logged; the server keeps serving.
"""

from __future__ import annotations

import logging
import ssl
import threading
from pathlib import Path
from typing import Protocol

import grpc
import uvicorn

from inferd.cli.tls import TlsFiles, TlsSettingsError, check_loadable

logger = logging.getLogger("inferd")


class _Port(Protocol):
    name: str  # as the log names the port
    flag: str  # "--http-" or "--grpc-", for messages naming the flag
    files: TlsFiles

    def load(self) -> None: ...


class CertificateReload:
    """The TLS ports of one server; `reload` (the SIGHUP handler) reads their files again."""

    def __init__(self) -> None:
        self._ports: list[_Port] = []

    def watch_uvicorn(self, name: str, server: uvicorn.Server, files: TlsFiles | None) -> None:
        """Reload the context of `server` (made by uvicorn with `files`) on SIGHUP."""
        if files is None:
            return
        server.config.load()  # makes the context now; serve() then finds the config loaded
        context = server.config.ssl
        assert context is not None
        self._ports.append(_ContextPort(name, files, context))

    def grpc_credentials(self, files: TlsFiles | None) -> grpc.ServerCredentials | None:
        """The gRPC server's credentials (None for plaintext), reloaded on SIGHUP."""
        if files is None:
            return None
        port = _GrpcPort(files)
        self._ports.append(port)
        return port.credentials()

    def reload(self) -> None:
        if not self._ports:
            logger.info("SIGHUP: no TLS certificate to reload")
            return
        for port in self._ports:
            try:
                check_loadable(port.files, port.flag)
            except TlsSettingsError as exc:
                logger.error("SIGHUP: the %s port keeps its certificate: %s", port.name, exc)
                continue
            try:
                port.load()
            except (OSError, ssl.SSLError) as exc:  # the files changed again since the check
                logger.error(
                    "SIGHUP: the %s port's certificate could not be loaded (send SIGHUP again "
                    "once the files are complete): %s",
                    port.name,
                    exc,
                )
                continue
            logger.info(
                "SIGHUP: the %s port serves the certificate of %s", port.name, port.files.cert
            )


class _ContextPort:
    flag = "--http-"  # the metrics port shares the HTTP port's files

    def __init__(self, name: str, files: TlsFiles, context: ssl.SSLContext) -> None:
        self.name, self.files, self._context = name, files, context

    def load(self) -> None:
        self._context.load_cert_chain(self.files.cert, self.files.key)
        if self.files.root:
            # OpenSSL can add CAs to a live context but not remove them (see docs/security.md).
            self._context.load_verify_locations(self.files.root)


class _GrpcPort:
    name = "gRPC"
    flag = "--grpc-"

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._lock = threading.Lock()
        self._pending: grpc.ServerCertificateConfiguration | None = None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            _configuration(self.files), self._fetch, require_client_authentication=self.files.mutual
        )

    def load(self) -> None:
        configuration = _configuration(self.files)
        with self._lock:
            self._pending = configuration

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC before each handshake: the new configuration once, else None (keep
        the current one)."""
        with self._lock:
            pending, self._pending = self._pending, None
        return pending


def _configuration(files: TlsFiles) -> grpc.ServerCertificateConfiguration:
    key, cert = Path(files.key).read_bytes(), Path(files.cert).read_bytes()
    root = Path(files.root).read_bytes() if files.root else None
    return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=root)
