"""Reading deploy/: its YAML documents, and the `inferd serve` command a container runs, parsed
by inferd's own command-line parser (so a renamed or removed flag fails the tests)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferd.cli.main import build_parser
from inferd.cli.settings import ServerSettings, settings_from_args

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
KSERVE = DEPLOY / "kserve"
CHART = DEPLOY / "helm" / "inferd"
HEAD_SCRIPT = DEPLOY / "bin" / "inferd-ray-head"


def plain_yaml_files() -> list[Path]:
    """Every YAML file of deploy/ but the chart's templates (Go templates, not YAML yet)."""
    templates = CHART / "templates"
    return sorted(
        path
        for path in DEPLOY.rglob("*")
        if path.suffix in (".yaml", ".yml") and templates not in path.parents
    )


def documents(text: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(text) if document is not None]


def kserve_documents(kind: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(KSERVE.glob("*.yaml")):
        for document in documents(path.read_text()):
            if document["kind"] == kind:
                yield path, document


def parse_serve(argv: Sequence[str], where: str) -> ServerSettings:
    """The settings `inferd serve ARGV` runs with; a test failure naming `where` if inferd's
    parser refuses them."""
    parser = build_parser()
    with contextlib.redirect_stderr(io.StringIO()) as errors:
        try:
            args = parser.parse_args(["serve", *argv])
        except SystemExit:
            pytest.fail(f"{where}: inferd serve refuses {list(argv)}: {errors.getvalue()}")
    return settings_from_args(args)


def container_serve(container: dict[str, Any], where: str) -> ServerSettings:
    """The settings of the `inferd serve` that a container runs: directly (`inferd serve ...`),
    or through deploy/bin/inferd-ray-head, which adds --cluster."""
    command, args = container.get("command", []), [str(arg) for arg in container["args"]]
    if command == ["inferd"]:
        assert args[0] == "serve", f"{where}: runs inferd {args[0]}, not inferd serve"
        return parse_serve(args[1:], where)
    assert command == ["inferd-ray-head"], f"{where}: runs {command}, not inferd"
    settings = parse_serve([*args, "--cluster", "10.0.0.1:6379"], where)
    assert settings.cluster == "10.0.0.1:6379", f"{where}: sets --cluster itself"
    return settings
