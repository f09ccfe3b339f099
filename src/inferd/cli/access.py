"""Who may reach what: the TLS files and restricted API groups of each protocol, from the
settings, all checked before the server starts."""

from __future__ import annotations

import ipaddress

from inferd.cli.settings import ServerSettings
from inferd.cli.tls import TlsSettingsError, tls_files
from inferd.frontends.http.cors import CorsSettingsError, parse_origins
from inferd.frontends.http.hosts import LOOPBACK_NAMES, AllowedHosts
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


def allowed_hosts(settings: ServerSettings) -> AllowedHosts:
    """The Host names served: loopback, the bound address, and --allowed-hosts (comma lists)."""
    given = [name for value in settings.allowed_hosts for name in value.split(",")]
    return AllowedHosts([*LOOPBACK_NAMES, settings.host, *given])


def host_names_note(settings: ServerSettings) -> str | None:
    """What a server reachable beyond loopback answers to by name (a DNS name clients use
    gets 421 until --allowed-hosts names it), or None on loopback or with the flag given."""
    if _is_loopback(settings.host) or settings.allowed_hosts:
        return None
    return (
        "HTTP and metrics answer requests whose Host is localhost, an IP address or "
        f"{settings.host}; a DNS name clients use needs --allowed-hosts (others get 421)"
    )


def startup_error(settings: ServerSettings) -> str | None:
    """Why these settings cannot be served, or None."""
    try:
        for protocol in ("http", "grpc"):
            tls_files(settings, protocol)
            restrictions(settings, protocol)
        parse_origins(settings.cors_allow_origin)
    except (TlsSettingsError, RestrictionSettingsError, CorsSettingsError) as exc:
        return str(exc)
    return None


def exposure_warnings(settings: ServerSettings) -> list[str]:
    """What is open to the network when the server listens beyond loopback: a plaintext port,
    and the groups that change the server (model-repository, shared-memory when enabled, and
    trace and logging, whose settings name files the server writes) left unrestricted.
    Empty on loopback."""
    if _is_loopback(settings.host):
        return []
    shared_memory = ["shared-memory"] if settings.enable_shared_memory else []
    risky = ["model-repository", *shared_memory, "trace", "logging"]
    warnings = []
    for protocol, port in (("http", settings.http_port), ("grpc", settings.grpc_port)):
        if protocol == "grpc" and not port:
            continue
        name = protocol.upper() if protocol == "http" else "gRPC"
        if tls_files(settings, protocol) is None:
            warnings.append(f"the {name} port is plaintext (--{protocol}-use-ssl)")
        open_groups = [group for group in risky if group not in restrictions(settings, protocol)]
        if open_groups:
            warnings.append(
                f"anyone reaching the {name} port can use {_listed(open_groups)} "
                "(--management-token restricts them)"
            )
    return warnings


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False
