"""Log lines of Python models, in the server's log and named by the model.

Each model's lines go to the logger `inferd.model.<model name>`, the model being the one whose
scope is entered (`model_scope.py`); a thread an in-process model starts itself logs as
`inferd.model`.
"""

from __future__ import annotations

import enum
import logging

from inferd.backends.python.model_scope import current

MODEL_LOGGER = "inferd.model"


def model_logger(model_name: str) -> logging.Logger:
    return logging.getLogger(f"{MODEL_LOGGER}.{model_name}" if model_name else MODEL_LOGGER)


class LogLevel(enum.IntEnum):
    """Triton's `pb_utils.Logger.LogLevel`, as `logging` levels (VERBOSE is DEBUG: shown with
    `--log-level debug`)."""

    INFO = logging.INFO
    WARNING = logging.WARNING
    ERROR = logging.ERROR
    VERBOSE = logging.DEBUG


class Logger:
    """Triton's `pb_utils.Logger`: static methods writing to the server's log."""

    LogLevel = LogLevel
    # Triton exports the levels on the class too: `logger.log("...", logger.INFO)`.
    INFO = LogLevel.INFO
    WARNING = LogLevel.WARNING
    ERROR = LogLevel.ERROR
    VERBOSE = LogLevel.VERBOSE

    @staticmethod
    def log(message: str, level: int = LogLevel.INFO) -> None:
        model_logger(current().model_name).log(level, "%s", message)

    @staticmethod
    def log_info(message: str) -> None:
        Logger.log(message, LogLevel.INFO)

    @staticmethod
    def log_warn(message: str) -> None:
        Logger.log(message, LogLevel.WARNING)

    @staticmethod
    def log_error(message: str) -> None:
        Logger.log(message, LogLevel.ERROR)

    @staticmethod
    def log_verbose(message: str) -> None:
        Logger.log(message, LogLevel.VERBOSE)
