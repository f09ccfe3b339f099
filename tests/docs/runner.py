"""Run a page's runnable blocks in order, as a reader pastes them, against real inferd servers.

Shell blocks run in bash (every curl must get a 2xx answer), Python blocks in one Python
session per page, config blocks are parsed as Triton's `ModelConfig`. A block ending in
`inferd serve` starts that server (on free ports) for the blocks after it; blocks before any
such block use the default server (`inferd serve --model-repository examples/model_repository`).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import IO, NoReturn

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tests.docs.blocks import DOC_PORTS, Block, Serve, localize, split_serve
from tests.integration.http_helpers import post_json
from tests.integration.server import RunningServer, running_server

BLOCK_TIMEOUT_S = 60
DEFAULT_REPOSITORY = "examples/model_repository"
SHELL_PRELUDE = """set -euo pipefail
# curl alone exits 0 on an HTTP error; a runnable block's requests must all succeed.
curl() { command curl --fail-with-body "$@"; }
"""
_SESSION = Path(__file__).with_name("python_session.py")
_LOG_LINES = 30


class BlockFailed(Exception):
    """A block did not work; the message names its file and line."""


def check_config(block: Block) -> None:
    try:
        text_format.Parse(block.text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise BlockFailed(f"{block.where} failed: not a valid model config: {exc}") from None


class PythonSession:
    def __init__(self, cwd: Path, env: dict[str, str], log: IO[str]) -> None:
        self._log = log
        self._process = subprocess.Popen(
            [sys.executable, str(_SESSION)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
            cwd=cwd, env=env,
        )  # fmt: skip

    def run(self, code: str, where: str) -> tuple[bool, str]:
        """Whether the code ran without raising, and what it printed (and raised)."""
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps({"code": code, "where": where}) + "\n")
        self._process.stdin.flush()
        ready, _, _ = select.select([self._process.stdout], [], [], BLOCK_TIMEOUT_S)
        line = self._process.stdout.readline() if ready else ""
        if not line:
            self._process.kill()
            self._log.seek(0)
            return False, f"no answer within {BLOCK_TIMEOUT_S} s\n{self._log.read()}"
        answer = json.loads(line)
        return bool(answer["ok"]), str(answer["output"])

    def close(self) -> None:
        """End of input ends the session; one that does not end in time is killed."""
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.close()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process.stdout.close()


class PageRun:
    """One page's blocks, in order, in `workdir` (a checkout's examples) and with `/tmp/`
    meaning `tmp`."""

    def __init__(self, workdir: Path, tmp: Path, default: Callable[[], RunningServer]) -> None:
        self._workdir = workdir
        self._tmp = tmp
        self._default = default
        self._server: RunningServer | None = None
        self._own_server = ExitStack()  # the server the page started itself, if any
        self._stack = ExitStack()
        self._python: PythonSession | None = None
        bin_dir = str(Path(sys.executable).parent)  # `python` and `inferd` of this environment
        self._env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}

    def __enter__(self) -> PageRun:
        self._stack.push(self._own_server)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()

    def run(self, block: Block) -> None:
        if block.kind == "config":
            check_config(block)
        elif block.kind == "python":
            self._run_python(block)
        else:
            commands, serve = split_serve(block)
            if commands.strip():
                self._run_shell(block, commands)
            if serve is not None:
                self._serve(block, serve)

    def _localize(self, text: str) -> str:
        """`text` for this page's server: the default one when the text talks to a server
        before the page started its own."""
        if self._server is None and any(str(port) in text for port in DOC_PORTS):
            self._server = self._default()
        return localize(text, self._server.ports if self._server else {}, self._tmp)

    def _run_shell(self, block: Block, commands: str) -> None:
        script = SHELL_PRELUDE + self._localize(commands)
        try:
            done = subprocess.run(
                ["bash", "-c", script], cwd=self._workdir, env=self._env, text=True,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=BLOCK_TIMEOUT_S,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            output = exc.output.decode() if isinstance(exc.output, bytes) else exc.output
            self._fail(block, f"still running after {BLOCK_TIMEOUT_S} s:\n{output or ''}")
        if done.returncode != 0:
            self._fail(block, f"exit status {done.returncode}:\n{done.stdout}")

    def _run_python(self, block: Block) -> None:
        code = self._localize(block.text)
        if self._python is None:
            log = self._stack.enter_context((self._tmp / "python_session.log").open("w+"))
            self._python = PythonSession(self._workdir, self._env, log)
            self._stack.callback(self._python.close)
        ok, output = self._python.run(code, block.where)
        if not ok:
            self._fail(block, output)

    def _serve(self, block: Block, serve: Serve) -> None:
        self._own_server.close()
        if serve.repository == DEFAULT_REPOSITORY and not serve.args:
            self._server = self._default()
        else:
            repository = self._workdir / localize(serve.repository, {}, self._tmp)
            args = [localize(arg, {}, self._tmp) for arg in serve.args]  # certificate files
            try:
                server = running_server(repository, *args)
                self._server = self._own_server.enter_context(server)
            except RuntimeError as exc:  # it did not start; the message holds its log
                self._fail(block, str(exc))
        if "HTTP" not in self._server.ports:  # it exited before running_server noticed
            self._fail(block, "inferd did not start")
        if "--http-use-ssl" in serve.args:  # its blocks say whether it serves
            return
        status, index = post_json(self._server.http_port, "/v2/repository/index", {})
        # A page's server may restrict the repository API (403): its blocks show the models.
        failed = [m for m in index if m.get("state") == "UNAVAILABLE"] if status == 200 else []
        if failed:
            self._fail(block, f"models did not load: {failed}")

    def _fail(self, block: Block, output: str) -> NoReturn:
        log = "\n".join(self._server.log[-_LOG_LINES:]) if self._server is not None else "none"
        raise BlockFailed(f"{block.where} failed: {output}\n--- server log (end) ---\n{log}")
