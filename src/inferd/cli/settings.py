"""Server settings: one dataclass, filled from CLI flags defaulting to INFERD_* variables."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from inferd.engine.control import ControlMode

ENV_PREFIX = "INFERD_"


@dataclass(frozen=True, slots=True)
class ServerSettings:
    model_repository: Path
    host: str = "127.0.0.1"
    server_name: str = "inferd"
    http_port: int = 8000
    grpc_port: int = 8001  # 0 disables the gRPC frontend
    metrics_port: int = 8002  # 0 disables the Prometheus endpoint
    log_level: str = "info"
    http_max_body_bytes: int = 256 * 1024 * 1024
    grpc_max_message_bytes: int = 256 * 1024 * 1024
    default_max_batch_size: int = 4
    auto_complete_config: bool = True
    strict_readiness: bool = True
    shutdown_grace_seconds: float = 30.0
    enable_shared_memory: bool = False  # lets clients make the server read/write their memory
    model_control_mode: ControlMode = ControlMode.NONE
    load_model: tuple[str, ...] = ()
    repository_poll_secs: float = 15.0
    log_verbose: int = 0


def env_default(name: str, default: str | None = None) -> str | None:
    """The value of INFERD_<NAME>, or `default`."""
    return os.environ.get(ENV_PREFIX + name.upper().replace("-", "_"), default)


def _flag(
    parser: argparse.ArgumentParser, name: str, kind: type, default: object, text: str
) -> None:
    env = ENV_PREFIX + name.upper().replace("-", "_")
    raw = env_default(name)
    value = kind(raw) if raw is not None else default
    parser.add_argument(
        f"--{name}", type=kind, default=value, help=f"{text} [env {env}; default {default}]"
    )


def _switch(parser: argparse.ArgumentParser, name: str, default: bool, text: str) -> None:
    env = ENV_PREFIX + name.upper().replace("-", "_")
    raw = env_default(name)
    value = raw.lower() in ("1", "true", "yes", "on") if raw is not None else default
    parser.add_argument(
        f"--{name}",
        action=argparse.BooleanOptionalAction,
        default=value,
        help=f"{text} [env {env}; default {default}]",
    )


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ServerSettings(model_repository=Path("."))
    repo = env_default("model-repository")
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=Path(repo) if repo else None,
        required=repo is None,
        help="folder of models in Triton's layout [env INFERD_MODEL_REPOSITORY]",
    )
    _flag(parser, "host", str, defaults.host, "address to listen on")
    _flag(
        parser,
        "server-name",
        str,
        defaults.server_name,
        "name in server metadata (Triton's example clients expect 'triton')",
    )
    _flag(parser, "http-port", int, defaults.http_port, "HTTP port (0 picks a free one)")
    _flag(parser, "grpc-port", int, defaults.grpc_port, "gRPC port (0 disables gRPC)")
    _flag(parser, "metrics-port", int, defaults.metrics_port, "Prometheus port (0 disables it)")
    _flag(parser, "log-level", str, defaults.log_level, "debug, info, warning or error")
    _flag(parser, "http-max-body-bytes", int, defaults.http_max_body_bytes, "largest request body")
    _flag(
        parser,
        "grpc-max-message-bytes",
        int,
        defaults.grpc_max_message_bytes,
        "largest gRPC message received or sent",
    )
    _flag(
        parser,
        "default-max-batch-size",
        int,
        defaults.default_max_batch_size,
        "max_batch_size given to auto-completed models whose first axis is dynamic",
    )
    _switch(parser, "auto-complete-config", True, "fill missing config fields from the model file")
    _switch(parser, "strict-readiness", True, "ready only when every model loaded")
    _flag(
        parser,
        "shutdown-grace-seconds",
        float,
        defaults.shutdown_grace_seconds,
        "on SIGTERM, how long in-flight requests may take to finish",
    )
    _switch(
        parser,
        "enable-shared-memory",
        False,
        "let clients register system shared-memory regions for inputs and outputs",
    )
    _add_model_control_arguments(parser)


def _add_model_control_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ServerSettings(model_repository=Path("."))
    mode = env_default("model-control-mode", defaults.model_control_mode.value)
    parser.add_argument(
        "--model-control-mode",
        choices=[m.value for m in ControlMode],
        default=mode,
        help="none: load every model at start; explicit: --load-model and the repository API; "
        "poll: follow the repository folder [env INFERD_MODEL_CONTROL_MODE; default none]",
    )
    startup = env_default("load-model")
    parser.add_argument(
        "--load-model",
        action="append",
        default=startup.split(",") if startup else [],
        metavar="NAME",
        help="explicit mode: a model to load at start, repeatable; '*' loads all "
        "[env INFERD_LOAD_MODEL, comma-separated]",
    )
    _flag(
        parser,
        "repository-poll-secs",
        float,
        defaults.repository_poll_secs,
        "poll mode: seconds between looks at the repository folder",
    )
    _flag(
        parser,
        "log-verbose",
        int,
        defaults.log_verbose,
        "1 or more logs one line per request with its timestamps",
    )


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    return ServerSettings(
        model_repository=args.model_repository,
        host=args.host,
        server_name=args.server_name,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        log_level=args.log_level,
        http_max_body_bytes=args.http_max_body_bytes,
        grpc_max_message_bytes=args.grpc_max_message_bytes,
        default_max_batch_size=args.default_max_batch_size,
        auto_complete_config=args.auto_complete_config,
        strict_readiness=args.strict_readiness,
        shutdown_grace_seconds=args.shutdown_grace_seconds,
        enable_shared_memory=args.enable_shared_memory,
        metrics_port=args.metrics_port,
        model_control_mode=ControlMode(args.model_control_mode),
        load_model=tuple(args.load_model),
        repository_poll_secs=args.repository_poll_secs,
        log_verbose=args.log_verbose,
    )
