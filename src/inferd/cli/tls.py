"""TLS for the HTTP (and metrics) and gRPC ports, from Triton's `--{http,grpc}-use-ssl...` flags.

Every file is read and checked when the server starts, so a missing or unreadable certificate
stops it with a message naming the flag, rather than failing on the first client's handshake.
SIGHUP reads them again (cli/tls_reload.py).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferd.cli.settings import ServerSettings


class TlsSettingsError(ValueError):
    """A TLS flag that cannot be served: the message names the flag."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: str
    key: str
    root: str  # CA bundle for client certificates; "" when none are checked
    mutual: bool  # a client without a certificate signed by `root` is refused


def tls_files(settings: ServerSettings, protocol: str) -> TlsFiles | None:
    """The checked TLS files of `protocol` ("http" or "grpc"), or None when it is plaintext."""
    flag = f"--{protocol}-"
    use, cert, key, root, mutual = (
        getattr(settings, f"{protocol}_{name}")
        for name in ("use_ssl", "server_cert", "server_key", "root_cert", "use_ssl_mutual")
    )
    if not use:
        given = [name for name, value in (("server-cert", cert), ("server-key", key),
                 ("root-cert", root), ("use-ssl-mutual", mutual)) if value]  # fmt: skip
        if given:
            raise TlsSettingsError(f"{flag}{given[0]} is given without {flag}use-ssl")
        return None
    for name, path in (("server-cert", cert), ("server-key", key)):
        if not path:
            raise TlsSettingsError(f"{flag}use-ssl needs {flag}{name}")
    if mutual and not root:
        raise TlsSettingsError(
            f"{flag}use-ssl-mutual needs {flag}root-cert (the CA that signs client certificates)"
        )
    files = TlsFiles(cert, key, root, mutual)
    check_loadable(files, flag)
    return files


def check_loadable(files: TlsFiles, flag: str) -> None:
    """Raise TlsSettingsError, naming the flag, unless the files make a server context."""
    for name, path in (("server-cert", files.cert), ("server-key", files.key),
                       ("root-cert", files.root)):  # fmt: skip
        if path and not Path(path).is_file():
            raise TlsSettingsError(f"{flag}{name}: no such file '{path}'")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(files.cert, files.key)
    except (OSError, ssl.SSLError) as exc:
        raise TlsSettingsError(
            f"{flag}server-cert '{files.cert}' and {flag}server-key '{files.key}' are not a "
            f"PEM certificate and its private key: {exc}"
        ) from None
    if files.root:
        try:
            context.load_verify_locations(files.root)
        except (OSError, ssl.SSLError) as exc:
            raise TlsSettingsError(
                f"{flag}root-cert '{files.root}' is not a PEM certificate: {exc}"
            ) from None


def uvicorn_options(files: TlsFiles | None) -> dict[str, Any]:
    """uvicorn.Config's TLS arguments (none for plaintext)."""
    if files is None:
        return {}
    options: dict[str, Any] = {"ssl_certfile": files.cert, "ssl_keyfile": files.key}
    if files.root:
        options["ssl_ca_certs"] = files.root
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED if files.mutual else ssl.CERT_OPTIONAL
    return options
