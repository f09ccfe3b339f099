"""uvicorn's line on the requests cut at the end of the shutdown grace: a WARNING, not an
ERROR, and dropped where the log level is above warnings."""

from __future__ import annotations

import logging

import pytest

from inferd.cli.listeners import grace_exceeded_as_warning

GRACE_EXCEEDED = "Cancel %s running task(s), timeout graceful shutdown exceeded"


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def logged(level: int, message: str) -> list[logging.LogRecord]:
    """What a logger at `level` with the filter passes of an ERROR `message` (with arg 2)."""
    logger = logging.getLogger(f"test_listeners.{level}")
    logger.setLevel(level)
    logger.propagate = False
    handler = Recorder()
    logger.addHandler(handler)
    logger.addFilter(grace_exceeded_as_warning)
    try:
        logger.error(message, 2)
    finally:
        logger.removeHandler(handler)
        logger.removeFilter(grace_exceeded_as_warning)
    return handler.records


def test_requests_cut_at_the_grace_are_a_warning() -> None:
    [record] = logged(logging.INFO, GRACE_EXCEEDED)
    assert (record.levelno, record.levelname) == (logging.WARNING, "WARNING")
    assert record.getMessage() == GRACE_EXCEEDED % 2


def test_the_warning_is_dropped_above_warnings() -> None:
    assert logged(logging.ERROR, GRACE_EXCEEDED) == []


@pytest.mark.parametrize("level", [logging.INFO, logging.ERROR])
def test_other_errors_stay_errors(level: int) -> None:
    [record] = logged(level, "Exception in ASGI application %s")
    assert record.levelno == logging.ERROR
