"""From `--model-repository` values to one `ModelRepository`: a folder, or a URL of a bucket
in object storage opened through fsspec, whose cloud package (s3fs, gcsfs, adlfs, each an
inferd extra) is imported only when such a URL is given.

Credentials come from each cloud's own environment variables and config files, read by its
client library (AWS_* and ~/.aws for S3, GOOGLE_APPLICATION_CREDENTIALS or gcloud's for GCS,
AZURE_STORAGE_* for Azure); never from the command line.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inferd.core.errors import InferdError, InvalidArgument, Unsupported
from inferd.repository.download_cache import DownloadCache
from inferd.repository.remote import RemoteRepository, describe
from inferd.repository.repositories import RepositorySet
from inferd.repository.store import LocalRepository, ModelRepository

# URL scheme -> (fsspec protocol, inferd extra that installs it)
_SCHEMES = {"s3": ("s3", "s3"), "gs": ("gs", "gcs"), "az": ("az", "azure"), "as": ("az", "azure")}


@dataclass(frozen=True, slots=True)
class RemoteLocation:
    url: str
    protocol: str  # fsspec's
    extra: str  # the inferd extra that brings its filesystem
    root: str  # bucket/prefix (container/prefix on Azure)
    options: dict[str, str] = field(default_factory=dict)  # filesystem options


def is_remote(location: str) -> bool:
    return "://" in location


def parse_location(url: str, s3_endpoint: str = "") -> RemoteLocation:
    """Triton's URL forms: `s3://bucket/prefix` or `s3://host:port/bucket/prefix` (an
    S3-compatible store over HTTP), `gs://bucket/prefix`, `as://account/container/prefix`;
    and fsspec's `az://container/prefix` (the account from AZURE_STORAGE_ACCOUNT_NAME)."""
    scheme, _, rest = url.partition("://")
    if scheme not in _SCHEMES:
        known = ", ".join(f"{s}://" for s in _SCHEMES)
        raise InvalidArgument(f"model repository '{url}': unknown scheme (use a folder or {known})")
    protocol, extra = _SCHEMES[scheme]
    rest = rest.strip("/")
    options: dict[str, str] = {}
    head, _, tail = rest.partition("/")
    if scheme == "s3" and ":" in head:
        rest, s3_endpoint = tail, s3_endpoint or f"http://{head}"
    elif scheme == "as":
        rest, options["account_name"] = tail, head
    if scheme == "s3" and s3_endpoint:
        options["endpoint_url"] = s3_endpoint
    if not rest:
        raise InvalidArgument(f"model repository '{url}' names no bucket")
    return RemoteLocation(url, protocol, extra, rest, options)


def open_filesystem(location: RemoteLocation) -> object:
    """The fsspec filesystem of a location; `Unsupported` when its extra is not installed."""
    options: dict[str, object] = {**location.options}
    if location.protocol == "az":
        options.update(_triton_azure_variables(options))
    try:
        fsspec = importlib.import_module("fsspec")
        # Listings are never cached: poll mode must see every change.
        return fsspec.filesystem(
            location.protocol, use_listings_cache=False, skip_instance_cache=True, **options
        )
    except ImportError as exc:
        raise Unsupported(
            f"model repository '{location.url}' needs the '{location.extra}' extra: "
            f"pip install 'inferd[{location.extra}]' ({exc})"
        ) from exc
    except Exception as exc:  # the client refuses its settings (an Azure URL with no account)
        raise InvalidArgument(f"model repository '{location.url}': {describe(exc)}") from exc


def _triton_azure_variables(options: dict[str, object]) -> dict[str, str]:
    """Triton's AZURE_STORAGE_ACCOUNT / AZURE_STORAGE_KEY, where adlfs's own are not set."""
    found: dict[str, str] = {}
    account = os.environ.get("AZURE_STORAGE_ACCOUNT")
    if "account_name" not in options and "AZURE_STORAGE_ACCOUNT_NAME" not in os.environ and account:
        found["account_name"] = account
    key = os.environ.get("AZURE_STORAGE_KEY")
    if key and "AZURE_STORAGE_ACCOUNT_KEY" not in os.environ:
        found["account_key"] = key
    return found


def open_repositories(
    locations: Sequence[str], cache_dir: Path | None = None, s3_endpoint: str = ""
) -> ModelRepository:
    """One repository over every location given (each a folder or a URL). Downloads go to
    `cache_dir` (one subfolder per URL), or to a temporary folder removed at close."""
    members: list[ModelRepository] = []
    try:
        # One location named twice is one repository (Triton keeps a set of them), not two
        # holding every model twice.
        for location in dict.fromkeys(locations):
            members.append(_open_one(location, cache_dir, s3_endpoint))
    except InferdError:
        for member in members:
            member.close()
        raise
    return members[0] if len(members) == 1 else RepositorySet(members)


def _open_one(location: str, cache_dir: Path | None, s3_endpoint: str) -> ModelRepository:
    if not is_remote(location):
        return LocalRepository(Path(location))
    parsed = parse_location(location, s3_endpoint)
    filesystem = open_filesystem(parsed)
    subfolder = hashlib.sha256(location.encode()).hexdigest()[:16]
    cache = DownloadCache(cache_dir / subfolder if cache_dir is not None else None)
    return RemoteRepository(filesystem, parsed.root, location, cache)
