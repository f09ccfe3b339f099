"""Triton's logging extension: where the server logs, which severities, how verbose and in which
format, changeable at run time (`LogControl`).

It owns the root logger's one handler: stderr, or `log_file` (appended to). Severities are a
filter on that handler; the verbose level goes to whoever logs verbose lines (`TraceLog`).
Formats: `default` (as the server logs at start), `ISO8601` (Triton's: UTC time first) and
`json` (one JSON object per line: time, level, logger, message).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Final

from inferd.core.errors import InvalidArgument
from inferd.core.runtime_settings import LogValue, LogValues

DEFAULT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS: Final = ("default", "ISO8601", "json")
_KINDS: Final[dict[str, type]] = {
    "log_file": str,
    "log_info": bool,
    "log_warning": bool,
    "log_error": bool,
    "log_verbose_level": int,
    "log_format": str,
}


class _Iso8601(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(DEFAULT_FORMAT, "%Y-%m-%dT%H:%M:%SZ")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime(datefmt or "%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document)


def _formatter(name: str) -> logging.Formatter:
    if name == "ISO8601":
        return _Iso8601()
    if name == "json":
        return _JsonLines()
    return logging.Formatter(DEFAULT_FORMAT)


class ServerLogs:
    """The `LogControl` of this process; `verbose` is told each new verbose level."""

    def __init__(self, verbose_level: int, verbose: Callable[[int], None]) -> None:
        self._settings: LogValues = {
            "log_file": "",
            "log_info": True,
            "log_warning": True,
            "log_error": True,
            "log_verbose_level": verbose_level,
            "log_format": "default",
        }
        self._verbose = verbose
        self._handler: logging.Handler | None = None
        self._handler_file = ""
        self._apply()

    def log_settings(self) -> LogValues:
        return dict(self._settings)

    def update_log_settings(self, changes: Mapping[str, LogValue]) -> LogValues:
        new = dict(self._settings)
        for key, value in changes.items():
            new[key] = _checked(key, value)
        if new["log_file"] != self._settings["log_file"] and new["log_file"]:
            try:
                open(str(new["log_file"]), "a").close()
            except OSError as exc:
                raise InvalidArgument(f"cannot open log_file '{new['log_file']}': {exc}") from None
        self._settings = new
        self._apply()
        return self.log_settings()

    def _apply(self) -> None:
        root = logging.getLogger()
        handler: logging.Handler
        path = str(self._settings["log_file"])
        if self._handler is not None and self._handler_file == path:
            handler = self._handler
        else:
            handler = logging.FileHandler(path) if path else logging.StreamHandler(sys.stderr)
            for old in list(root.handlers):
                root.removeHandler(old)
                if isinstance(old, logging.FileHandler):
                    old.close()
            root.addHandler(handler)
            self._handler, self._handler_file = handler, path
        handler.setFormatter(_formatter(str(self._settings["log_format"])))
        for old_filter in list(handler.filters):
            handler.removeFilter(old_filter)
        handler.addFilter(self._severity_allowed)
        self._verbose(int(self._settings["log_verbose_level"]))

    def _severity_allowed(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return bool(self._settings["log_error"])
        if record.levelno >= logging.WARNING:
            return bool(self._settings["log_warning"])
        return bool(self._settings["log_info"])


def _checked(key: str, value: LogValue) -> LogValue:
    kind = _KINDS.get(key)
    if kind is None:
        raise InvalidArgument(f"unknown log setting '{key}' (known: {', '.join(_KINDS)})")
    # bool is an int: a verbose level must be a number, a switch true or false.
    if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise InvalidArgument(f"log setting '{key}' must be an integer >= 0, not {value!r}")
    if kind is not int and not isinstance(value, kind):
        raise InvalidArgument(f"log setting '{key}' must be a {kind.__name__}, not {value!r}")
    if key == "log_format" and value not in FORMATS:
        raise InvalidArgument(f"log_format takes {', '.join(FORMATS)}, not '{value}'")
    return value
