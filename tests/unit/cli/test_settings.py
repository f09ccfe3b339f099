"""`inferd serve`'s flags, derived from ServerSettings: defaults, environment, help."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

import pytest

from inferd.cli.settings import ServerSettings, add_server_arguments, settings_from_args
from inferd.engine.control import ControlMode


def _parse(*argv: str) -> ServerSettings:
    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    return settings_from_args(parser.parse_args(argv))


def _help() -> str:
    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    return " ".join(parser.format_help().split())


def test_defaults_are_the_dataclass_defaults() -> None:
    assert _parse("--model-repository", "models") == ServerSettings(("models",))


def test_every_setting_is_a_flag_with_its_variable_and_default_in_the_help() -> None:
    text = _help()
    defaults = ServerSettings(Path("."))
    for setting in fields(ServerSettings):
        flag, env = "--" + setting.name.replace("_", "-"), "INFERD_" + setting.name.upper()
        assert flag in text and f"[env {env}" in text
    assert "[env INFERD_HTTP_PORT; default 8000]" in text
    assert f"default {defaults.model_control_mode.value}]" in text
    assert "--strict-readiness, --no-strict-readiness" in text


def test_flags_set_every_kind_of_setting() -> None:
    settings = _parse(
        "--model-repository", "m", "--http-port", "9", "--no-strict-readiness",
        "--shutdown-grace-seconds", "2.5", "--model-control-mode", "explicit",
        "--load-model", "a", "--load-model", "b", "--enable-shared-memory",
    )  # fmt: skip
    assert settings.model_repository == ("m",)
    assert settings.http_port == 9
    assert settings.strict_readiness is False
    assert settings.shutdown_grace_seconds == 2.5
    assert settings.model_control_mode is ControlMode.EXPLICIT
    assert settings.load_model == ("a", "b")
    assert settings.enable_shared_memory is True


def test_environment_gives_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERD_MODEL_REPOSITORY", "/models")
    monkeypatch.setenv("INFERD_HTTP_PORT", "7")
    monkeypatch.setenv("INFERD_AUTO_COMPLETE_CONFIG", "off")
    monkeypatch.setenv("INFERD_ENABLE_SHARED_MEMORY", "Yes")
    monkeypatch.setenv("INFERD_MODEL_CONTROL_MODE", "poll")
    monkeypatch.setenv("INFERD_LOAD_MODEL", "x,y")
    monkeypatch.setenv("INFERD_REPOSITORY_POLL_SECS", "3")
    settings = _parse()
    assert settings.model_repository == ("/models",)
    assert settings.http_port == 7
    assert settings.auto_complete_config is False
    assert settings.enable_shared_memory is True
    assert settings.model_control_mode is ControlMode.POLL
    assert settings.load_model == ("x", "y")
    assert settings.repository_poll_secs == 3.0


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERD_MODEL_REPOSITORY", "/models")
    monkeypatch.setenv("INFERD_HTTP_PORT", "7")
    monkeypatch.setenv("INFERD_STRICT_READINESS", "0")
    monkeypatch.setenv("INFERD_LOAD_MODEL", "x")
    settings = _parse(
        "--model-repository", "other", "--http-port", "8", "--strict-readiness",
        "--load-model", "z",
    )  # fmt: skip
    assert (settings.model_repository, settings.http_port) == (("other",), 8)
    assert settings.strict_readiness is True
    assert settings.load_model == ("x", "z")  # appended to the variable's names


def test_model_repository_is_required_without_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("INFERD_MODEL_REPOSITORY", raising=False)
    with pytest.raises(SystemExit):
        _parse()


def test_several_repositories_from_flags_or_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERD_MODEL_REPOSITORY", "/models,s3://bucket/models")
    assert _parse().model_repository == ("/models", "s3://bucket/models")
    flags = _parse("--model-repository", "a", "--model-repository", "gs://b/c")
    assert flags.model_repository == ("a", "gs://b/c")


@pytest.mark.parametrize(
    ("flag", "expected"),
    [("--grpc-use-ssl=true", True), ("--grpc-use-ssl=false", False), ("--grpc-use-ssl=1", True),
     ("--grpc-use-ssl=OFF", False), ("--grpc-use-ssl", True), ("--no-grpc-use-ssl", False)],
)  # fmt: skip
def test_switches_take_tritons_true_and_false(flag: str, expected: bool) -> None:
    assert _parse("--model-repository", "m", flag).grpc_use_ssl is expected


def test_every_switch_takes_a_value() -> None:
    settings = _parse(
        "--model-repository", "m", "--http-use-ssl=true", "--http-use-ssl-mutual=true",
        "--grpc-use-ssl-mutual=true", "--strict-readiness=false",
    )  # fmt: skip
    assert settings.http_use_ssl and settings.http_use_ssl_mutual and settings.grpc_use_ssl_mutual
    assert settings.strict_readiness is False


@pytest.mark.parametrize(
    ("flag", "message"),
    [("--grpc-use-ssl=maybe", "expected true or false, got 'maybe'"),
     ("--http-use-ssl-mutual=", "expected true or false, got ''"),
     ("--no-grpc-use-ssl=true", "takes no value")],
)  # fmt: skip
def test_a_wrong_switch_value_exits_2_naming_the_flag(
    flag: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        _parse("--model-repository", "m", flag)
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert f"argument {flag.split('=')[0].replace('--no-', '--')}" in error
    assert message in error
