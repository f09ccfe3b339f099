"""Who may reach what: the TLS files and restricted API groups of each protocol, from the
settings, all checked before the server starts."""

from __future__ import annotations

from inferd.cli.settings import ServerSettings
from inferd.cli.tls import TlsSettingsError, tls_files
from inferd.frontends.restricted import (
    GRPC_KEY_PREFIX,
    Restriction,
    RestrictionSettingsError,
    parse_restrictions,
)


def restrictions(settings: ServerSettings, protocol: str) -> dict[str, Restriction]:
    """The restricted groups of `protocol` ("http" or "grpc")."""
    token = settings.management_token
    if protocol == "http":
        specs = settings.http_restricted_api
        return parse_restrictions(specs, "--http-restricted-api", "api", "", token)
    flag = "--grpc-restricted-protocol"
    specs = settings.grpc_restricted_protocol
    return parse_restrictions(specs, flag, "protocol", GRPC_KEY_PREFIX, token)


def startup_error(settings: ServerSettings) -> str | None:
    """Why these settings cannot be served, or None."""
    try:
        for protocol in ("http", "grpc"):
            tls_files(settings, protocol)
            restrictions(settings, protocol)
    except (TlsSettingsError, RestrictionSettingsError) as exc:
        return str(exc)
    return None
