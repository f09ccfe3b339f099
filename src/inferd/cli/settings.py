"""Server settings: one dataclass, the single source of `inferd serve`'s flags.

Each field is one flag, `--` + its name with `-` for `_`; its default, help text and
environment variable (`INFERD_` + the name in capitals) come from the field, so adding a
setting is adding a field. A flag given on the command line wins over the variable.
"""

from __future__ import annotations

import argparse
import enum
import os
import typing
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

from inferd.cli.switch import Switch, SwitchHelpFormatter
from inferd.engine.control import ControlMode
from inferd.scheduling.rate_limiter import RateLimitMode

ENV_PREFIX = "INFERD_"
_TRUE = ("1", "true", "yes", "on")


def _flag(text: str, metavar: str | None = None) -> dict[str, str | None]:
    """A field's metadata: the help text (and metavar) of its flag."""
    return {"help": text, "metavar": metavar}


@dataclass(frozen=True, slots=True)
class ServerSettings:
    model_repository: tuple[str, ...] = field(
        metadata=_flag(
            "models in Triton's layout: a folder, or a bucket URL (s3://bucket/prefix, "
            "s3://host:port/bucket/prefix, gs://bucket/prefix, as://account/container/prefix, "
            "az://container/prefix); repeatable, each model name in one of them",
            "PATH_OR_URL",
        )
    )
    model_cache_dir: str = field(
        default="",
        metadata=_flag(
            "where versions from object storage are downloaded to "
            "(default: a temporary folder, removed at exit)",
            "DIR",
        ),
    )
    s3_endpoint_url: str = field(
        default="",
        metadata=_flag(
            "S3-compatible store to use for s3:// repositories (default: AWS_ENDPOINT_URL, or AWS)",
            "URL",
        ),
    )
    host: str = field(default="127.0.0.1", metadata=_flag("address to listen on"))
    server_name: str = field(
        default="inferd",
        metadata=_flag("name in server metadata (Triton's example clients expect 'triton')"),
    )
    http_port: int = field(default=8000, metadata=_flag("HTTP port (0 picks a free one)"))
    grpc_port: int = field(default=8001, metadata=_flag("gRPC port (0 disables gRPC)"))
    metrics_port: int = field(default=8002, metadata=_flag("Prometheus port (0 disables it)"))
    metrics_buckets: str = field(
        default="",
        metadata=_flag(
            "bounds of the latency histograms, in seconds, comma-separated "
            "(default 0.0005,0.001,0.0025,...,5,10)",
            "S,S,...",
        ),
    )
    metrics_config: tuple[str, ...] = field(
        default=(),
        metadata=_flag(
            "as Triton's: histogram_latencies=false leaves the latency histograms out, "
            "summary_latencies=true adds the latency summaries, summary_quantiles=Q:E,... sets "
            "their quantiles; repeatable",
            "KEY=VALUE",
        ),
    )
    cache_config: tuple[str, ...] = field(
        default=(),
        metadata=_flag(
            "as Triton's: local,size=BYTES gives the server a response cache of BYTES, used by "
            "models whose config sets response_cache { enable: true }; none without it",
            "local,size=BYTES",
        ),
    )
    allow_cpu_metrics: bool = field(
        default=True, metadata=_flag("host and process CPU and memory metrics")
    )
    allow_gpu_metrics: bool = field(
        default=True,
        metadata=_flag("GPU utilisation, memory and power metrics (needs inferd[gpu-metrics])"),
    )
    log_level: str = field(default="info", metadata=_flag("debug, info, warning or error"))
    http_restricted_api: tuple[str, ...] = field(
        default=(),
        metadata=_flag(
            "serve these API groups (health, metadata, inference, shared-memory, model-config, "
            "model-repository, statistics, trace, logging) only to requests with header "
            "KEY: VALUE; repeatable",
            "GROUP[,GROUP...]:KEY=VALUE",
        ),
    )
    grpc_restricted_protocol: tuple[str, ...] = field(
        default=(),
        metadata=_flag(
            "as --http-restricted-api, for gRPC: the metadata key is triton-grpc-protocol-KEY",
            "GROUP[,GROUP...]:KEY=VALUE",
        ),
    )
    management_token: str = field(
        default="",
        metadata=_flag(
            "serve every group but health, metadata and inference only to requests with "
            "'authorization: Bearer TOKEN' (HTTP and gRPC); prefer the environment variable",
            "TOKEN",
        ),
    )
    cors_allow_origin: tuple[str, ...] = field(
        default=(),
        metadata=_flag(
            "let web pages of this origin (scheme://host[:port], or '*' for any) read the HTTP "
            "API's answers; repeatable or comma-separated; no CORS headers without it",
            "ORIGIN",
        ),
    )
    allowed_hosts: tuple[str, ...] = field(
        default=(),
        metadata=_flag(
            "Host names the HTTP and metrics ports answer besides localhost, loopback and IP "
            "addresses, and --host (others get 421, against DNS rebinding); '*' answers all",
            "HOST[,HOST...]",
        ),
    )
    http_use_ssl: bool = field(
        default=False,
        metadata=_flag("serve HTTPS on the HTTP port (and the metrics port) with the cert below"),
    )
    http_server_cert: str = field(
        default="", metadata=_flag("PEM certificate (chain) of the HTTP port", "FILE")
    )
    http_server_key: str = field(
        default="", metadata=_flag("PEM private key of --http-server-cert", "FILE")
    )
    http_root_cert: str = field(
        default="",
        metadata=_flag("PEM CA certificates that client certificates are checked against", "FILE"),
    )
    http_use_ssl_mutual: bool = field(
        default=False,
        metadata=_flag("require a client certificate signed by --http-root-cert (mutual TLS)"),
    )
    grpc_use_ssl: bool = field(
        default=False, metadata=_flag("serve gRPC over TLS with the cert below")
    )
    grpc_server_cert: str = field(
        default="", metadata=_flag("PEM certificate (chain) of the gRPC port", "FILE")
    )
    grpc_server_key: str = field(
        default="", metadata=_flag("PEM private key of --grpc-server-cert", "FILE")
    )
    grpc_root_cert: str = field(
        default="",
        metadata=_flag("PEM CA certificates that client certificates are checked against", "FILE"),
    )
    grpc_use_ssl_mutual: bool = field(
        default=False,
        metadata=_flag("require a client certificate signed by --grpc-root-cert (mutual TLS)"),
    )
    http_max_body_bytes: int = field(
        default=256 * 1024 * 1024, metadata=_flag("largest request body")
    )
    http_max_header_bytes: int = field(
        default=64 * 1024,
        metadata=_flag("largest HTTP request line and headers together (431 beyond)"),
    )
    grpc_max_message_bytes: int = field(
        default=256 * 1024 * 1024, metadata=_flag("largest gRPC message received or sent")
    )
    default_max_batch_size: int = field(
        default=4,
        metadata=_flag("max_batch_size given to auto-completed models whose first axis is dynamic"),
    )
    auto_complete_config: bool = field(
        default=True, metadata=_flag("fill missing config fields from the model file")
    )
    strict_readiness: bool = field(
        default=True, metadata=_flag("ready only when every model loaded")
    )
    shutdown_grace_seconds: float = field(
        default=30.0,
        metadata=_flag("on SIGTERM, how long in-flight requests may take to finish"),
    )
    # Off by default: it lets clients make the server read and write memory they name.
    enable_shared_memory: bool = field(
        default=False,
        metadata=_flag("let clients register system shared-memory regions for inputs and outputs"),
    )
    shared_memory_max_regions: int = field(
        default=1024, metadata=_flag("most shared-memory regions registered at once")
    )
    shared_memory_max_bytes: int = field(
        default=64 * 1024**3,
        metadata=_flag("most bytes all registered shared-memory regions may span together"),
    )
    model_control_mode: ControlMode = field(
        default=ControlMode.NONE,
        metadata=_flag(
            "none: load every model at start; explicit: --load-model and the repository API; "
            "poll: follow the repository folder"
        ),
    )
    load_model: tuple[str, ...] = field(
        default=(),
        metadata=_flag(
            "explicit mode: a model to load at start, repeatable; '*' loads all", "NAME"
        ),
    )
    # Off by default: it lets clients write files to this machine's disk.
    allow_model_load_files: bool = field(
        default=False,
        metadata=_flag(
            "explicit mode: let a load request carry the model's files (file:<version>/<name> "
            "parameters), written to a private temporary folder until the model is unloaded"
        ),
    )
    model_load_files_max_bytes: int = field(
        default=256 * 1024 * 1024,
        metadata=_flag("most bytes of model files one load request may carry"),
    )
    repository_poll_secs: float = field(
        default=15.0, metadata=_flag("poll mode: seconds between looks at the repository folder")
    )
    log_verbose: int = field(
        default=0, metadata=_flag("1 or more logs one line per request with its timestamps")
    )
    trace_config: tuple[str, ...] = field(
        default=(),
        metadata=_flag(
            "start-up trace settings, as Triton's: level=OFF|TIMESTAMPS|TENSORS, rate=N, "
            "count=N, log_frequency=N, file=PATH, mode=triton|opentelemetry; and the OTLP "
            "exporter's: opentelemetry,url=HOST:PORT/v1/traces, opentelemetry,protocol="
            "grpc|http, opentelemetry,resource=KEY=VALUE, opentelemetry,bsp_*=N (needs "
            "inferd[otel]); repeatable",
            "[MODE,]KEY=VALUE",
        ),
    )
    rate_limit: RateLimitMode = field(
        default=RateLimitMode.OFF,
        metadata=_flag(
            "execution_count: an instance runs a batch only while the resources its "
            "instance_group's rate_limiter names are free, across all models (Triton's)"
        ),
    )
    rate_limit_resource: tuple[str, ...] = field(
        default=(),
        metadata=_flag(
            "copies of a rate-limiter resource, on GPU DEVICE or on each device; once given, "
            "a resource left out has none; repeatable",
            "NAME:COUNT[:DEVICE]",
        ),
    )
    cluster: str = field(
        default="",
        metadata=_flag(
            "run model instances on a Ray cluster: auto, HOST:PORT, ray://HOST:PORT, or "
            "local[:N] for N simulated nodes on this machine (needs inferd[ray])",
            "ADDR",
        ),
    )
    cluster_repo_shared: bool = field(
        default=False,
        metadata=_flag(
            "cluster nodes read the model repository at the same path, rather than "
            "receiving each version's files from this server"
        ),
    )
    cluster_placement_timeout: float = field(
        default=120.0,
        metadata=_flag("seconds an instance group may wait for room on the cluster"),
    )


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    if parser.formatter_class is argparse.HelpFormatter:
        parser.formatter_class = SwitchHelpFormatter
    kinds = typing.get_type_hints(ServerSettings)
    for setting in fields(ServerSettings):
        env = ENV_PREFIX + setting.name.upper()
        options, shown = _options(setting, kinds[setting.name], os.environ.get(env))
        if setting.metadata["metavar"]:
            options["metavar"] = setting.metadata["metavar"]
        options["help"] = f"{setting.metadata['help']} [env {env}{shown}]"
        parser.add_argument("--" + setting.name.replace("_", "-"), **options)


def _options(setting: Field[Any], kind: Any, raw: str | None) -> tuple[dict[str, Any], str]:
    """add_argument's options for one setting, with its value in the environment (`raw`) as
    the default, and what the help text says of that default."""
    required = setting.default is MISSING and not raw
    if typing.get_origin(kind) is tuple:
        # Flags given are appended to the variable's comma-separated values, except for a
        # required setting (the repositories), where they replace them.
        action = _ReplaceDefault if setting.default is MISSING else "append"
        options = {"action": action, "default": raw.split(",") if raw else []}
        return {**options, "required": required}, ", comma-separated"
    if setting.default is MISSING:
        return {"type": kind, "default": kind(raw) if raw else None, "required": required}, ""
    default = setting.default.value if isinstance(setting.default, enum.Enum) else setting.default
    shown = f"; default {default}"
    if kind is bool:
        value = raw.lower() in _TRUE if raw is not None else default
        return {"action": Switch, "default": value}, shown
    if issubclass(kind, enum.Enum):
        choices = [member.value for member in kind]
        return {"choices": choices, "default": raw if raw is not None else default}, shown
    return {"type": kind, "default": kind(raw) if raw is not None else default}, shown


class _ReplaceDefault(argparse.Action):
    """A repeatable flag whose first use drops the default (the variable's values)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        given = getattr(namespace, self.dest)
        setattr(namespace, self.dest, [*([] if given is self.default else given), values])


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    kinds = typing.get_type_hints(ServerSettings)
    values: dict[str, Any] = {}
    for setting in fields(ServerSettings):
        value, kind = getattr(args, setting.name), kinds[setting.name]
        if typing.get_origin(kind) is tuple:
            value = tuple(value)
        elif isinstance(kind, type) and issubclass(kind, enum.Enum):
            value = kind(value)
        values[setting.name] = value
    return ServerSettings(**values)
