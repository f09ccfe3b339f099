"""The part of PromQL the inferd dashboard uses, evaluated over scrapes kept in memory.

Enough to draw `inferd.json`'s panels without a Prometheus: selectors with `=` and `=~`
matchers, `rate` and `increase` over a range, `sum by (...)`, `histogram_quantile` and `/`.
`rate` is the slope between the first and last samples in the range (no extrapolation, no
counter resets: one server run), which is close to Prometheus's for a steady scrape interval.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

Labels = frozenset[tuple[str, str]]
Vector = dict[Labels, float]
# Scrapes: (seconds, {(name, labels): value}), in time order.
Scrape = tuple[float, Mapping[tuple[str, Labels], float]]

_TOKEN = re.compile(r'\s*(\d+\.\d+|\d+|[A-Za-z_:][A-Za-z0-9_:]*|=~|!=|"[^"]*"|\[[^\]]*\]|\S)')


@dataclass
class Query:
    """A parsed expression: `evaluate(scrapes, index)` is its vector at scrape `index`."""

    evaluate: Callable[[Sequence[Scrape], int], Vector]


def parse(expression: str, ranges: Mapping[str, float]) -> Query:
    """`ranges`: seconds for each `$__...` range variable (`$__rate_interval`, `$__range`)."""
    tokens = [t for t in _TOKEN.findall(expression) if t]
    parser = _Parser(tokens, ranges)
    query = parser.expression()
    if parser.position != len(tokens):
        raise ValueError(f"unsupported PromQL: {expression}")
    return query


class _Parser:
    def __init__(self, tokens: list[str], ranges: Mapping[str, float]) -> None:
        self.tokens = tokens
        self.position = 0
        self.ranges = ranges

    def take(self, expected: str | None = None) -> str:
        token = self.tokens[self.position]
        if expected is not None and token != expected:
            raise ValueError(f"expected '{expected}', found '{token}'")
        self.position += 1
        return token

    def peek(self) -> str:
        return self.tokens[self.position] if self.position < len(self.tokens) else ""

    def expression(self) -> Query:
        left = self.term()
        if self.peek() != "/":
            return left
        self.take("/")
        right = self.term()
        return Query(lambda s, i: _divide(left.evaluate(s, i), right.evaluate(s, i)))

    def term(self) -> Query:
        token = self.take()
        if token == "sum":
            self.take("by")
            keep = self.names()
            inner = self.parenthesised()
            return Query(lambda s, i: _sum_by(inner.evaluate(s, i), keep))
        if token in ("rate", "increase"):
            self.take("(")
            name, matchers = self.selector()
            window = self.window()
            self.take(")")
            per_second = token == "rate"
            return Query(lambda s, i: _over_range(s, i, name, matchers, window, per_second))
        if token == "histogram_quantile":
            self.take("(")
            quantile = float(self.take())
            self.take(",")
            inner = self.expression()
            self.take(")")
            return Query(lambda s, i: _histogram_quantile(quantile, inner.evaluate(s, i)))
        self.position -= 1
        name, matchers = self.selector()
        return Query(lambda s, i: _select(s[i][1], name, matchers))

    def parenthesised(self) -> Query:
        self.take("(")
        inner = self.expression()
        self.take(")")
        return inner

    def names(self) -> tuple[str, ...]:
        self.take("(")
        names = [self.take()]
        while self.peek() == ",":
            self.take(",")
            names.append(self.take())
        self.take(")")
        return tuple(names)

    def selector(self) -> tuple[str, list[tuple[str, str, str]]]:
        name = self.take()
        matchers: list[tuple[str, str, str]] = []
        if self.peek() == "{":
            self.take("{")
            while self.peek() != "}":
                label, operator, value = self.take(), self.take(), self.take().strip('"')
                matchers.append((label, operator, value))
                if self.peek() == ",":
                    self.take(",")
            self.take("}")
        return name, matchers

    def window(self) -> float:
        text = self.take()[1:-1]
        if text in self.ranges:
            return self.ranges[text]
        number, unit = re.fullmatch(r"(\d+)([smh])", text).groups()  # type: ignore[union-attr]
        return float(number) * {"s": 1, "m": 60, "h": 3600}[unit]


def _matches(labels: Labels, matchers: list[tuple[str, str, str]]) -> bool:
    values = dict(labels)
    for label, operator, expected in matchers:
        value = values.get(label, "")
        if operator == "=" and value != expected:
            return False
        if operator == "=~" and not re.fullmatch(expected, value):
            return False
    return True


def _select(
    samples: Mapping[tuple[str, Labels], float], name: str, matchers: list[tuple[str, str, str]]
) -> Vector:
    return {
        labels: value
        for (sample, labels), value in samples.items()
        if sample == name and _matches(labels, matchers)
    }


def _over_range(
    scrapes: Sequence[Scrape],
    index: int,
    name: str,
    matchers: list[tuple[str, str, str]],
    window: float,
    per_second: bool,
) -> Vector:
    now = scrapes[index][0]
    first = index
    while first > 0 and scrapes[first - 1][0] >= now - window:
        first -= 1
    if first == index:
        return {}
    start, end = (
        _select(scrapes[first][1], name, matchers),
        _select(scrapes[index][1], name, matchers),
    )
    seconds = now - scrapes[first][0]
    return {
        labels: (value - start.get(labels, 0.0)) / (seconds if per_second else 1.0)
        for labels, value in end.items()
    }


def _sum_by(vector: Vector, keep: tuple[str, ...]) -> Vector:
    summed: Vector = {}
    for labels, value in vector.items():
        key = frozenset((k, v) for k, v in labels if k in keep)
        summed[key] = summed.get(key, 0.0) + value
    return summed


def _divide(left: Vector, right: Vector) -> Vector:
    return {k: v / right[k] if right[k] else math.nan for k, v in left.items() if k in right}


def _histogram_quantile(quantile: float, buckets: Vector) -> Vector:
    """Prometheus's: linear within the bucket the rank falls in (the lower bound of the first
    bucket is 0); the highest finite bound when it falls in +Inf."""
    groups: dict[Labels, list[tuple[float, float]]] = {}
    for labels, count in buckets.items():
        le = dict(labels)["le"]
        key = frozenset((k, v) for k, v in labels if k != "le")
        groups.setdefault(key, []).append((float(le), count))
    result: Vector = {}
    for key, bounds in groups.items():
        bounds.sort()
        total = bounds[-1][1]
        if total <= 0:
            result[key] = math.nan
            continue
        rank = quantile * total
        lower, below = 0.0, 0.0
        for upper, cumulative in bounds:
            if cumulative >= rank:
                if math.isinf(upper):
                    result[key] = lower
                else:
                    share = (rank - below) / (cumulative - below) if cumulative > below else 0
                    result[key] = lower + (upper - lower) * share
                break
            lower, below = upper, cumulative
    return result
