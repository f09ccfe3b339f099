"""The docs test's own parts: which blocks it finds, how it reads `inferd serve`, and that a
failing block fails with its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.blocks import Block, Serve, localize, runnable_blocks, split_serve
from tests.docs.runner import BlockFailed, PageRun
from tests.integration.server import RunningServer

PAGE = """# A page

<!-- runnable -->
```bash
curl -s localhost:8000/v2/health/ready
```

```bash
echo not marked
```

1. A step:

   <!-- runnable -->
   ```python
   print("indented")
   ```

<!-- runnable -->
```pbtxt
max_batch_size: 8
```
"""


def page(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(text)
    return path


def test_only_marked_blocks_are_found_with_their_fence_line(tmp_path: Path) -> None:
    blocks = runnable_blocks(page(tmp_path, PAGE), Path("docs/page.md"))
    assert [(b.where, b.kind, b.text) for b in blocks] == [
        ("docs/page.md:4", "shell", "curl -s localhost:8000/v2/health/ready\n"),
        ("docs/page.md:15", "python", 'print("indented")\n'),
        ("docs/page.md:20", "config", "max_batch_size: 8\n"),
    ]


@pytest.mark.parametrize("after", ["```json\n{}\n```\n", "text\n", ""])
def test_a_marker_that_marks_nothing_runnable_is_an_error(tmp_path: Path, after: str) -> None:
    with pytest.raises(ValueError, match=r"page\.md:2: <!-- runnable --> must come just before"):
        runnable_blocks(page(tmp_path, "intro\n<!-- runnable -->\n" + after), Path("page.md"))


def shell(text: str) -> Block:
    return Block(Path("page.md"), 3, "shell", text)


def test_a_closing_inferd_serve_is_the_server_to_start() -> None:
    commands, serve = split_serve(
        shell(
            "cp -r examples/model_repository /tmp/models\n"
            "taskset -c 0 inferd serve --model-repository /tmp/models \\\n"
            "    --http-port 8000 --model-control-mode poll &  # in the background\n"
        )
    )
    assert commands == "cp -r examples/model_repository /tmp/models\n"
    assert serve == Serve("/tmp/models", ["--model-control-mode", "poll"])
    assert split_serve(shell("curl -s localhost:8000\n")) == ("curl -s localhost:8000\n", None)


@pytest.mark.parametrize(
    "text",
    [
        "inferd serve --model-repository m\ncurl -s localhost:8000\n",
        "inferd serve --model-repository m &\ncurl -s localhost:8000\n",
    ],
)
def test_commands_after_a_server_start_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"page\.md:3: commands after `inferd serve`"):
        split_serve(shell(text))


def test_the_docs_ports_and_tmp_become_the_tests() -> None:
    ports = {"HTTP": 40001, "gRPC": 40002}
    text = "curl localhost:8000/x 127.0.0.1:8001 localhost:8002 localhost:80001 /tmp/models"
    assert localize(text, ports, Path("/t")) == (
        "curl 127.0.0.1:40001/x 127.0.0.1:40002 localhost:8002 localhost:80001 /t/models"
    )


def no_server() -> RunningServer:
    raise AssertionError("these blocks talk to no server")


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        ("shell", "echo before\nfalse\necho after\n", "exit status 1:\nbefore\n"),
        ("python", "print(x)\nprint(1 / 0)\n", "1\nTraceback"),
        ("config", "max_batch_size: [\n", "not a valid model config"),
    ],
)
def test_a_failing_block_fails_naming_its_file_and_line(
    tmp_path: Path, kind: str, text: str, message: str
) -> None:
    """Python blocks share one session per page: the second one sees the first one's `x`."""
    with PageRun(tmp_path, tmp_path, no_server) as run:
        run.run(Block(Path("docs/page.md"), 7, "python", "x = 1\n"))
        with pytest.raises(BlockFailed, match=r"^docs/page\.md:12 failed") as failed:
            run.run(Block(Path("docs/page.md"), 12, kind, text))
        assert message in str(failed.value)


def test_a_server_that_does_not_start_fails_its_block(tmp_path: Path) -> None:
    block = shell("inferd serve --model-repository /tmp/missing\n")
    with (
        PageRun(tmp_path, tmp_path, no_server) as run,
        pytest.raises(BlockFailed, match=r"^page\.md:3 failed: inferd did not start"),
    ):
        run.run(block)
