"""One Python session for a page's Python blocks, as a reader pastes them into one interpreter:
names defined by a block stay defined for the next. Run as a script by the docs test.

Reads one JSON object per line on stdin (`code`, `where`), runs the code, and answers one JSON
line on stdout: `ok`, and `output` (what the block printed, then the traceback if it raised).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import traceback
from typing import Any


def main() -> None:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    answers = sys.stdout
    for line in sys.stdin:
        block = json.loads(line)
        printed = io.StringIO()
        ok = True
        try:
            with contextlib.redirect_stdout(printed):
                exec(compile(block["code"], block["where"], "exec"), namespace)
        except BaseException:
            ok = False
            printed.write(traceback.format_exc())
        answers.write(json.dumps({"ok": ok, "output": printed.getvalue()}) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
