"""`--model-repository` values: folders and bucket URLs (Triton's forms), and several
repositories served as one with each model name in exactly one of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferd.core.errors import InvalidArgument, NotFound
from inferd.repository.locations import RemoteLocation, open_repositories, parse_location
from inferd.repository.repositories import RepositorySet
from inferd.repository.store import LocalRepository


@pytest.mark.parametrize(
    ("url", "endpoint", "expected"),
    [
        ("s3://bucket/models", "", RemoteLocation("", "s3", "s3", "bucket/models")),
        (
            "s3://bucket/models/",
            "http://minio:9000",
            RemoteLocation("", "s3", "s3", "bucket/models", {"endpoint_url": "http://minio:9000"}),
        ),
        (
            "s3://127.0.0.1:9000/bucket/models",  # Triton's form for an S3-compatible store
            "",
            RemoteLocation(
                "", "s3", "s3", "bucket/models", {"endpoint_url": "http://127.0.0.1:9000"}
            ),
        ),
        ("gs://bucket", "", RemoteLocation("", "gs", "gcs", "bucket")),
        (
            "as://account/container/models",  # Triton's Azure form
            "",
            RemoteLocation("", "az", "azure", "container/models", {"account_name": "account"}),
        ),
        ("az://container/models", "", RemoteLocation("", "az", "azure", "container/models")),
    ],
)
def test_urls(url: str, endpoint: str, expected: RemoteLocation) -> None:
    parsed = parse_location(url, endpoint)
    assert (parsed.protocol, parsed.extra, parsed.root, parsed.options) == (
        expected.protocol,
        expected.extra,
        expected.root,
        expected.options,
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host/models", "unknown scheme"),
        ("s3://", "names no bucket"),
        ("as://account", "names no bucket"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_location(url)


def make(repository: Path, *names: str) -> Path:
    for name in names:
        (repository / name / "1").mkdir(parents=True)
    return repository


def test_one_folder_is_a_local_repository(tmp_path: Path) -> None:
    opened = open_repositories([str(make(tmp_path, "a"))])
    assert isinstance(opened, LocalRepository) and opened.model_names() == ["a"]


def test_several_repositories_serve_unique_names_and_refuse_duplicates(tmp_path: Path) -> None:
    first, second = make(tmp_path / "one", "a", "both"), make(tmp_path / "two", "b", "both")
    repositories = open_repositories([str(first), str(second)])
    assert isinstance(repositories, RepositorySet)
    assert repositories.model_names() == ["a", "b", "both"]
    assert repositories.known_model_names() == ["a", "b", "both"]
    assert sorted(repositories.scan()) == ["a", "b", "both"]
    folder = repositories.read_model("b")
    assert repositories.fetch(folder, 1) == second / "b" / "1"
    with pytest.raises(InvalidArgument, match=f"'both' is in more than one .*{first}, {second}"):
        repositories.read_model("both")
    with pytest.raises(NotFound):
        repositories.read_model("neither")


def test_a_missing_folder_among_several_hides_no_other(tmp_path: Path) -> None:
    repositories = open_repositories([str(make(tmp_path / "one", "a")), str(tmp_path / "gone")])
    assert repositories.known_model_names() == ["a"]
    with pytest.raises(NotFound, match="is not a folder"):
        repositories.model_names()
