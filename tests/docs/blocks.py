"""Find the code blocks of a Markdown page that are marked runnable, and read their commands.

A block is runnable when the line just before its opening fence is `<!-- runnable -->` (an
HTML comment: GitHub shows nothing). Its fence says what it is: `bash`/`sh` (shell), `python`,
or `pbtxt` (a model config, only parsed). A shell block may end with `inferd serve ...`: the
test starts that server itself, as the reader starts it in another terminal.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

MARKER = "<!-- runnable -->"
KINDS = {"bash": "shell", "sh": "shell", "python": "python", "pbtxt": "config"}

_FENCE = re.compile(r"^\s*```(\S*)\s*$")
# Flags whose values the test chooses itself (ports) or rewrites (the repository path).
_PORT_FLAGS = ("--http-port", "--grpc-port", "--metrics-port")
_REPOSITORY = "--model-repository"
# A server start, maybe pinned to CPUs (`taskset -c 0 inferd serve ...`; the test does not pin).
_SERVE = re.compile(r"^\s*(?:taskset -c \S+ )?inferd serve\b")
# The ports the docs show, by the service the test's server has on them.
DOC_PORTS = {8000: "HTTP", 8001: "gRPC", 8002: "metrics"}


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    kind: str  # "shell", "python" or "config"
    text: str

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Serve:
    """An `inferd serve` command of the docs: its repository and its other flags."""

    repository: str
    args: list[str] = field(default_factory=list)


def runnable_blocks(path: Path, shown_as: Path) -> list[Block]:
    """The marked blocks of `path`, named `shown_as:line`; a marker not followed by a fence of
    a known kind is an error (it would silently check nothing)."""
    lines = path.read_text().splitlines()
    blocks = []
    for index, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        fence = _FENCE.match(lines[index + 1]) if index + 1 < len(lines) else None
        kind = KINDS.get(fence.group(1)) if fence else None
        if fence is None or kind is None:
            raise ValueError(
                f"{shown_as}:{index + 1}: {MARKER} must come just before a fence of one of "
                f"{', '.join(KINDS)}"
            )
        end = next(i for i in range(index + 2, len(lines)) if _FENCE.match(lines[i]))
        indent = len(lines[index + 1]) - len(lines[index + 1].lstrip())
        body = "\n".join(text[indent:] for text in lines[index + 2 : end])
        blocks.append(Block(shown_as, index + 2, kind, body + "\n"))
    return blocks


def split_serve(block: Block) -> tuple[str, Serve | None]:
    """The shell commands of a block before its closing `inferd serve`, and that command.

    A server started in the foreground must end its block: commands after it would never run
    when pasted.
    """
    lines = block.text.rstrip("\n").splitlines()
    starts = [i for i, line in enumerate(lines) if _SERVE.match(line)]
    if not starts:
        return block.text, None
    if len(starts) > 1 or any(not line.rstrip().endswith("\\") for line in lines[starts[0] : -1]):
        raise ValueError(f"{block.where}: commands after `inferd serve` never run when pasted")
    command = " ".join(line.rstrip().removesuffix("\\") for line in lines[starts[0] :])
    return "\n".join(lines[: starts[0]]) + "\n", _parse_serve(block, command)


def _parse_serve(block: Block, command: str) -> Serve:
    words = shlex.split(command, comments=True)
    words = words[words.index("serve") + 1 :]
    if words[-1:] == ["&"]:
        words.pop()
    repository = None
    args: list[str] = []
    iterator = iter(words)
    for word in iterator:
        flag, _, value = word.partition("=")
        if flag in (_REPOSITORY, *_PORT_FLAGS):
            value = value or next(iterator, "")
            if flag == _REPOSITORY:
                repository = value
        else:
            args.append(word)
    if repository is None:
        raise ValueError(f"{block.where}: `inferd serve` without {_REPOSITORY}")
    return Serve(repository, args)


def localize(text: str, ports: dict[str, int], tmp: Path) -> str:
    """The block as it runs here: the docs' ports (8000, 8001, 8002 on localhost) become the
    test server's, and `/tmp/` the test's own temporary folder."""
    for doc_port, service in DOC_PORTS.items():
        if service in ports:
            text = re.sub(
                rf"\b(?:localhost|127\.0\.0\.1):{doc_port}\b", f"127.0.0.1:{ports[service]}", text
            )
    return text.replace("/tmp/", f"{tmp}/")
