"""On/off flags written bare (`--grpc-use-ssl`, `--no-grpc-use-ssl`) or with a value, as
Triton's scripts write them (`--grpc-use-ssl=true`, `--strict-readiness=false`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

_VALUES = {"true": True, "on": True, "1": True, "yes": True}
_VALUES |= {"false": False, "off": False, "0": False, "no": False}


class Switch(argparse.BooleanOptionalAction):
    """`--X`, `--X=true|false` (also on/off, 1/0, yes/no) and `--no-X`; any other value stops
    the parser (exit status 2) with a message naming the flag."""

    def __init__(self, option_strings: Sequence[str], dest: str, **options: Any) -> None:
        super().__init__(option_strings, dest, **options)
        self.nargs = "?"  # after the base class set 0: a value may follow, Triton's way
        self.metavar = "true|false"

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        negated = bool(option_string and option_string.startswith("--no-"))
        if values is None:
            setattr(namespace, self.dest, not negated)
            return
        if negated:
            raise argparse.ArgumentError(self, f"takes no value (got '{values}')")
        value = _VALUES.get(str(values).lower())
        if value is None:
            raise argparse.ArgumentError(self, f"expected true or false, got '{values}'")
        setattr(namespace, self.dest, value)


class SwitchHelpFormatter(argparse.HelpFormatter):
    """Lists a switch's flags as argparse lists a bare on/off flag's, `--X, --no-X`."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if isinstance(action, Switch):
            return ", ".join(action.option_strings)
        return super()._format_action_invocation(action)
