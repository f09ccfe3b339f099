"""Triton's wording for a failed model load, shared by both frontends."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from inferd.core.errors import InferdError


@contextlib.contextmanager
def load_failure(name: str) -> Iterator[None]:
    """Re-raise an error of a load request (bad override, unknown model, no version served)
    as the same error type worded "failed to load '<name>': ...", as Triton words it:
    clients test for that phrase."""
    try:
        yield
    except InferdError as exc:
        if exc.message.startswith((f"failed to load '{name}'", f"load failed for model '{name}'")):
            raise  # worded already, as Triton words that failure
        raise type(exc)(f"failed to load '{name}': {exc.message}") from exc
