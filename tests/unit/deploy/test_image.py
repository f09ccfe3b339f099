"""deploy/Dockerfile and deploy/bin: the image installs extras inferd has, runs an `inferd serve`
its parser accepts, and the cluster scripts it ships are sound shell that run inferd."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.unit.deploy.manifests import (
    DEPLOY,
    HEAD_SCRIPT,
    ROOT,
    documents,
    parse_serve,
    plain_yaml_files,
)

DOCKERFILE = (DEPLOY / "Dockerfile").read_text()


def _instructions(name: str) -> list[str]:
    """The arguments of each `NAME ...` line of the Dockerfile."""
    return re.findall(rf"^{name}\s+(.+)$", DOCKERFILE, flags=re.MULTILINE)


def test_every_plain_yaml_file_parses() -> None:
    files = plain_yaml_files()
    assert len(files) >= 7, files
    for path in files:
        assert documents(path.read_text()), f"{path} is empty"


def test_image_installs_extras_that_inferd_declares() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    (argument,) = _instructions("ARG")
    name, _, default = argument.partition("=")
    assert name == "EXTRAS"
    assert {"ray", "s3"} <= set(default.split(",")) <= set(extras)
    assert any('"/tmp/inferd-src[${EXTRAS}]"' in line for line in _instructions("RUN"))


def test_image_runs_inferd_serve_on_its_default_ports() -> None:
    (entrypoint,), (command,), (exposed,) = (
        _instructions(name) for name in ("ENTRYPOINT", "CMD", "EXPOSE")
    )
    assert json.loads(entrypoint) == ["inferd"]
    words = json.loads(command)
    assert words[0] == "serve"
    settings = parse_serve(words[1:], "deploy/Dockerfile CMD")
    assert settings.host == "0.0.0.0"
    assert {int(port) for port in exposed.split()} == {
        settings.http_port,
        settings.grpc_port,
        settings.metrics_port,
    }


def test_image_ships_every_cluster_script() -> None:
    copies = [line.split() for line in _instructions("COPY")]
    shipped = {
        source for *sources, _ in copies for source in sources if source.startswith("deploy/")
    }
    scripts = {path.relative_to(ROOT).as_posix() for path in (DEPLOY / "bin").iterdir()}
    assert shipped == scripts


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("script", sorted((DEPLOY / "bin").iterdir()), ids=lambda path: path.name)
def test_cluster_script_is_valid_bash(script: Path) -> None:
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert script.stat().st_mode & 0o111, f"{script} is not executable"


def test_head_script_hands_its_arguments_to_inferd_serve_with_the_cluster() -> None:
    last = HEAD_SCRIPT.read_text().strip().splitlines()[-1]
    assert last == 'exec inferd serve "$@" --cluster "$address"'
