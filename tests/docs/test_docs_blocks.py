"""The code blocks of README.md, docs/ and examples/ marked `<!-- runnable -->` work when pasted.

Each page runs in a temporary copy of the example repository (`examples/model_repository`),
against real servers on free loopback ports, so the docs keep showing the default ports: the
blocks' `localhost:8000` / `8001` / `8002` become the test server's HTTP, gRPC and metrics
ports, and `/tmp/` the test's temporary folder. What "runnable" means: tests/docs/blocks.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.docs.blocks import MARKER, runnable_blocks
from tests.docs.runner import DEFAULT_REPOSITORY, BlockFailed, PageRun
from tests.integration.server import RunningServer, running_server

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(
    page
    for page in (
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "examples").rglob("*.md"),
    )
    if MARKER in page.read_text()
)


def copy_examples(checkout: Path) -> None:
    shutil.copytree(
        ROOT / DEFAULT_REPOSITORY,
        checkout / DEFAULT_REPOSITORY,
        ignore=shutil.ignore_patterns("__pycache__"),
    )


@pytest.fixture(scope="module")
def default_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[], RunningServer]]:
    """The plain example server, shared by the pages, started when a page first needs it."""
    with ExitStack() as stack:
        started: list[RunningServer] = []

        def get() -> RunningServer:
            if not started:
                checkout = tmp_path_factory.mktemp("docs_default")
                copy_examples(checkout)
                started.append(stack.enter_context(running_server(checkout / DEFAULT_REPOSITORY)))
            return started[0]

        yield get


def test_the_docs_mark_their_runnable_blocks() -> None:
    blocks = [block for page in PAGES for block in runnable_blocks(page, page.relative_to(ROOT))]
    assert len(PAGES) >= 10 and len(blocks) >= 30, [str(page) for page in PAGES]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_runnable_blocks_work_when_pasted(
    page: Path, default_server: Callable[[], RunningServer], tmp_path: Path
) -> None:
    blocks = runnable_blocks(page, page.relative_to(ROOT))
    checkout, tmp = tmp_path / "checkout", tmp_path / "tmp"
    copy_examples(checkout)
    tmp.mkdir()
    failure = None
    with PageRun(checkout, tmp, default_server) as run:
        try:
            for block in blocks:
                run.run(block)
        except BlockFailed as failed:
            failure = str(failed)
    if failure is not None:
        pytest.fail(failure, pytrace=False)
