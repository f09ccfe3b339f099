"""What the frontends' header caches share: the key of an answer's header, and keeping a
bounded number of entries (the oldest dropped first, so a model whose shapes change with every
answer cannot grow a cache without bound)."""

from __future__ import annotations

from typing import Any, TypeVar

from inferd.core.types import InferResponse

K = TypeVar("K")
V = TypeVar("V")


def answer_key(response: InferResponse) -> tuple[Any, ...]:
    """Everything an answer's header says apart from parameters: model, version, id, and each
    output's name, datatype and shape."""
    return (
        response.model_name,
        response.model_version,
        response.id,
        *((name, array.dtype, array.shape) for name, array in response.outputs.items()),
    )


def keep(kept: dict[K, V], key: K, value: V, limit: int) -> None:
    """`kept[key] = value`, first dropping the oldest entry when `limit` are kept."""
    if len(kept) >= limit:
        del kept[next(iter(kept))]
    kept[key] = value
