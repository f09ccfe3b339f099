"""Restricted API groups, as Triton's `--http-restricted-api` and `--grpc-restricted-protocol`:
a request to a restricted group is served only when it carries the group's header (HTTP) or
metadata (gRPC) with the group's value, compared in constant time.

A flag is `GROUP[,GROUP...]:KEY=VALUE`; each group is in one flag at most. On gRPC the key is
`triton-grpc-protocol-KEY`, as Triton names it. `--management-token TOKEN` restricts the groups
no ordinary client needs (all but health, metadata and inference) to `authorization: Bearer
TOKEN`, leaving alone a group that a flag restricts already.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from inferd.core.errors import InferdError

GROUPS: Final = (
    "health",
    "metadata",
    "inference",
    "shared-memory",
    "model-config",
    "model-repository",
    "statistics",
    "trace",
    "logging",
)
MANAGEMENT_GROUPS: Final = tuple(g for g in GROUPS if g not in ("health", "metadata", "inference"))
GRPC_KEY_PREFIX: Final = "triton-grpc-protocol-"
AUTHORIZATION: Final = "authorization"


class RestrictionSettingsError(ValueError):
    """A restriction flag that cannot be served: the message says which and why."""


class Forbidden(InferdError):
    """A request to a restricted group without its header (HTTP 403, gRPC PERMISSION_DENIED)."""


@dataclass(frozen=True, slots=True)
class Restriction:
    header: str  # lower case, as ASGI and gRPC hand header names over
    value: bytes

    def allows(self, given: bytes | None) -> bool:
        # compare_digest: how long the comparison takes says nothing of the expected value.
        return given is not None and hmac.compare_digest(given, self.value)


Restrictions = Mapping[str, Restriction]


def parse_restrictions(
    specs: Sequence[str], flag: str, kind: str, key_prefix: str = "", management_token: str = ""
) -> dict[str, Restriction]:
    """The restricted groups of one protocol, from its flag's values (`kind`: Triton's word for
    a group in messages, "api" or "protocol")."""
    restrictions: dict[str, Restriction] = {}
    for spec in _joined(specs, flag):
        groups, key, value = _split(spec, flag)
        restriction = Restriction((key_prefix + key).lower(), value.encode())
        for group in groups:
            if group not in GROUPS:
                raise RestrictionSettingsError(f"unknown restricted {kind} '{group}'")
            if group in restrictions:
                raise RestrictionSettingsError(
                    f"restricted {kind} '{group}' can not be specified in multiple config groups"
                )
            restrictions[group] = restriction
    if management_token:
        bearer = Restriction(AUTHORIZATION, f"Bearer {management_token}".encode())
        for group in MANAGEMENT_GROUPS:
            restrictions.setdefault(group, bearer)
    return restrictions


def _joined(specs: Iterable[str], flag: str) -> list[str]:
    """Whole specs: the environment variable's comma-separated values split a spec's groups
    apart ("a,b:k=v" arrives as "a" and "b:k=v"), so a value without ':' joins the next."""
    whole: list[str] = []
    pending: list[str] = []
    for item in specs:
        pending.append(item)
        if ":" in item:
            whole.append(",".join(pending))
            pending = []
    if pending:
        raise RestrictionSettingsError(_format_error(flag, ",".join(pending)))
    return whole


def _split(spec: str, flag: str) -> tuple[list[str], str, str]:
    groups, _, setting = spec.partition(":")
    key, equals, value = setting.partition("=")
    if not groups or not key or not equals or not value:
        raise RestrictionSettingsError(_format_error(flag, spec))
    return [group.strip() for group in groups.split(",")], key, value


def _format_error(flag: str, spec: str) -> str:
    return f"{flag} option format is '<group>[,<group>...]:<key>=<value>'. Got {spec}"
