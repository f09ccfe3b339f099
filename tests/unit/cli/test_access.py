"""What `inferd serve` warns about when it listens beyond loopback, and the restriction flags
as they arrive from the command line and the environment."""

from __future__ import annotations

import argparse

import pytest

from inferd.cli.access import exposure_warnings, restrictions, startup_error
from inferd.cli.settings import ServerSettings, add_server_arguments, settings_from_args
from inferd.frontends.restricted import Restriction


def _parse(*argv: str) -> ServerSettings:
    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    return settings_from_args(parser.parse_args(["--model-repository", "models", *argv]))


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_nothing_to_warn_about_on_loopback(host: str) -> None:
    assert exposure_warnings(_parse("--host", host, "--enable-shared-memory")) == []


def test_an_open_plaintext_server_is_named_port_by_port() -> None:
    warnings = exposure_warnings(_parse("--host", "0.0.0.0", "--enable-shared-memory"))
    assert warnings == [
        "the HTTP port is plaintext (--http-use-ssl)",
        "anyone reaching the HTTP port can use model-repository, shared-memory, trace and "
        "logging "
        "(--management-token restricts them)",
        "the gRPC port is plaintext (--grpc-use-ssl)",
        "anyone reaching the gRPC port can use model-repository, shared-memory, trace and "
        "logging "
        "(--management-token restricts them)",
    ]


def test_restricted_groups_and_a_closed_grpc_port_leave_only_plaintext_http() -> None:
    settings = _parse(
        "--host", "10.0.0.5", "--grpc-port", "0",
        "--http-restricted-api", "model-repository,trace,logging:admin-key=v",
    )  # fmt: skip
    assert exposure_warnings(settings) == ["the HTTP port is plaintext (--http-use-ssl)"]


def test_the_environment_carries_several_restriction_flags(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "INFERD_GRPC_RESTRICTED_PROTOCOL", "model-repository,health:k1=v1,metadata:k2=v2"
    )
    monkeypatch.setenv("INFERD_MANAGEMENT_TOKEN", "t")
    parsed = restrictions(_parse(), "grpc")
    assert parsed["health"] == Restriction("triton-grpc-protocol-k1", b"v1")
    assert parsed["metadata"] == Restriction("triton-grpc-protocol-k2", b"v2")
    assert parsed["statistics"] == Restriction("authorization", b"Bearer t")
    assert restrictions(_parse(), "http")["statistics"] == Restriction("authorization", b"Bearer t")


def test_a_wrong_flag_is_a_startup_error_naming_it() -> None:
    assert startup_error(_parse()) is None
    error = startup_error(_parse("--http-restricted-api", "statistics,tracing:k=v"))
    assert error == "unknown restricted api 'tracing'"
