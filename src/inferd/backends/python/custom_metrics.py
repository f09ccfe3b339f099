"""Metrics a Python model defines itself (Triton's `pb_utils.MetricFamily` and `Metric`),
exported on `/metrics` next to the server's own (`inferd.metrics.model_metrics` reads `STORE`).

One store per server process, as in Triton: families are named by the model, and two models
asking for the same name and kind share it. In a worker process each change is applied to the
worker's own copy (what `value()` reads there) and sent to the server (`forward_to`), which
applies it to its store.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from inferd.backends.python.triton_errors import TritonModelException

logger = logging.getLogger(__name__)


class MetricKind(enum.IntEnum):
    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2


Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class MetricUpdate:
    """One change of one metric (what crosses from a worker process to the server)."""

    family: str
    description: str
    kind: MetricKind
    labels: Labels
    buckets: tuple[float, ...] | None
    operation: str  # "family" | "create" | "increment" | "set" | "observe"
    value: float = 0.0


@dataclass(slots=True)
class Series:
    """One metric of a family: a value, or a histogram's bucket counts, sum and count."""

    labels: Labels
    buckets: tuple[float, ...] | None
    value: float = 0.0
    counts: list[int] = field(default_factory=list)  # per bucket, then +Inf
    count: int = 0


@dataclass(slots=True)
class Family:
    name: str
    description: str
    kind: MetricKind
    series: dict[Labels, Series] = field(default_factory=dict)


class MetricStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._families: dict[str, Family] = {}

    def apply(self, update: MetricUpdate) -> None:
        with self._lock:
            family = self._families.get(update.family)
            if family is None:
                family = Family(update.family, update.description, update.kind)
                self._families[update.family] = family
            elif family.kind != update.kind:
                raise TritonModelException(
                    f"metric family '{update.family}' exists with kind {family.kind.name}, "
                    f"not {update.kind.name}"
                )
            if update.operation == "family":
                return
            series = family.series.get(update.labels)
            if series is None:
                counts = [0] * (len(update.buckets) + 1) if update.buckets is not None else []
                series = Series(update.labels, update.buckets, counts=counts)
                family.series[update.labels] = series
            if update.operation == "increment":
                series.value += update.value
            elif update.operation == "set":
                series.value = update.value
            elif update.operation == "observe":
                _observe(series, update.value)

    def value(self, family: str, labels: Labels) -> float:
        with self._lock:
            return self._families[family].series[labels].value

    def snapshot(self) -> list[Family]:
        """Copies of every family, for an export."""
        with self._lock:
            return [
                Family(
                    f.name,
                    f.description,
                    f.kind,
                    {
                        key: Series(s.labels, s.buckets, s.value, list(s.counts), s.count)
                        for key, s in f.series.items()
                    },
                )
                for f in self._families.values()
            ]


def _observe(series: Series, value: float) -> None:
    assert series.buckets is not None
    index = next((i for i, bound in enumerate(series.buckets) if value <= bound), None)
    series.counts[len(series.buckets) if index is None else index] += 1
    series.value += value  # a histogram's sum
    series.count += 1


STORE = MetricStore()
_forward: Callable[[MetricUpdate], None] | None = None


def apply_from_worker(update: MetricUpdate) -> None:
    """A change a worker process made (and checked against its own store)."""
    try:
        STORE.apply(update)
    except TritonModelException as exc:  # a family another model made with another kind
        logger.warning("a metric change of a worker process was dropped: %s", exc)


def forward_to(send: Callable[[MetricUpdate], None]) -> None:
    """In a worker process: where each change goes besides the worker's own store."""
    global _forward
    _forward = send


def _apply(update: MetricUpdate) -> None:
    STORE.apply(update)
    if _forward is not None:
        _forward(update)


class MetricFamily:
    """Triton's `pb_utils.MetricFamily(name, description, kind)`."""

    COUNTER = MetricKind.COUNTER
    GAUGE = MetricKind.GAUGE
    HISTOGRAM = MetricKind.HISTOGRAM

    def __init__(self, name: str, description: str, kind: int) -> None:
        if not name or not all(c.isalnum() or c in "_:" for c in name) or name[0].isdigit():
            raise TritonModelException(f"'{name}' is not a valid metric name")
        self._name = name
        self._description = description
        self._kind = MetricKind(kind)
        self._update((), None, "family", 0.0)

    def Metric(
        self, labels: Mapping[str, str] | None = None, buckets: Sequence[float] | None = None
    ) -> Metric:
        if self._kind is MetricKind.HISTOGRAM:
            if not buckets:
                raise TritonModelException("a HISTOGRAM metric needs its buckets")
            bounds: tuple[float, ...] | None = tuple(sorted(float(b) for b in buckets))
        elif buckets is not None:
            raise TritonModelException("only a HISTOGRAM metric takes buckets")
        else:
            bounds = None
        key = tuple(sorted((str(k), str(v)) for k, v in (labels or {}).items()))
        return Metric(self._update, self._name, self._kind, key, bounds)

    def _update(
        self, labels: Labels, buckets: tuple[float, ...] | None, operation: str, value: float
    ) -> None:
        _apply(
            MetricUpdate(
                self._name, self._description, self._kind, labels, buckets, operation, value
            )
        )


class Metric:
    """One metric of a family, named by its labels."""

    def __init__(
        self,
        update: Callable[[Labels, tuple[float, ...] | None, str, float], None],
        family: str,
        kind: MetricKind,
        labels: Labels,
        buckets: tuple[float, ...] | None,
    ) -> None:
        self._update = update
        self._family = family
        self._kind = kind
        self._labels = labels
        self._buckets = buckets
        update(labels, buckets, "create", 0.0)

    def increment(self, value: float) -> None:
        if self._kind is MetricKind.HISTOGRAM:
            raise TritonModelException("increment is for COUNTER and GAUGE metrics")
        if self._kind is MetricKind.COUNTER and value < 0:
            raise TritonModelException("a COUNTER cannot be decremented")
        self._update(self._labels, None, "increment", float(value))

    def set(self, value: float) -> None:
        if self._kind is not MetricKind.GAUGE:
            raise TritonModelException("set is for GAUGE metrics")
        self._update(self._labels, None, "set", float(value))

    def observe(self, value: float) -> None:
        if self._kind is not MetricKind.HISTOGRAM:
            raise TritonModelException("observe is for HISTOGRAM metrics")
        if math.isnan(value):
            raise TritonModelException("cannot observe NaN")
        self._update(self._labels, self._buckets, "observe", float(value))

    def value(self) -> float:
        """The value (in a worker process: as this worker changed it)."""
        if self._kind is MetricKind.HISTOGRAM:
            raise TritonModelException("value is for COUNTER and GAUGE metrics")
        return STORE.value(self._family, self._labels)
