"""Triton's wording for the trace settings of a model that is not served, shared by both
frontends."""

from __future__ import annotations

from inferd.core.errors import NotFound
from inferd.engine.engine import Engine


def check_traced_model(engine: Engine, model: str) -> None:
    """Raises `NotFound` worded as Triton's trace extension words it (its QA matches the
    phrase) when `model` is not served."""
    try:
        engine.model_metadata(model)
    except NotFound:
        raise NotFound(f"Request for unknown model : {model}") from None
