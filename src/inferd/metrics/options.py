"""What `--metrics-buckets` and `--metrics-config` ask of the latency metrics.

`--metrics-config` takes Triton's keys: `histogram_latencies`, `summary_latencies` and
`summary_quantiles=Q:E,Q:E,...` (quantile and its allowed rank error). A flag's value, or the
comma-separated `INFERD_METRICS_CONFIG`, may split the quantile list: a `Q:E` item without
`=` continues the `summary_quantiles` before it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

# Seconds; from sub-millisecond in-process models to multi-second generative ones.
DEFAULT_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# Triton's (quantile, error) pairs.
DEFAULT_QUANTILES = ((0.5, 0.05), (0.9, 0.01), (0.95, 0.001), (0.99, 0.001), (0.999, 0.001))
_KEYS = "histogram_latencies=true|false, summary_latencies=true|false, summary_quantiles=Q:E,..."


@dataclass(frozen=True, slots=True)
class MetricsOptions:
    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    histograms: bool = True
    # Triton's latency summaries, with these quantiles; () leaves them out.
    quantiles: tuple[tuple[float, float], ...] = ()


def parse_buckets(text: str) -> tuple[float, ...]:
    """Histogram bounds from `--metrics-buckets` (seconds, comma-separated, increasing)."""
    try:
        bounds = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--metrics-buckets: not a list of numbers: '{text}'") from None
    if not bounds:
        raise ValueError("--metrics-buckets: give at least one bound")
    if bounds[0] <= 0 or any(a >= b for a, b in itertools.pairwise(bounds)):
        raise ValueError(f"--metrics-buckets: bounds must be positive and increasing: '{text}'")
    return bounds


def metrics_options(buckets: str, config: Sequence[str]) -> MetricsOptions:
    """The options of `--metrics-buckets` and every `--metrics-config` item (raises
    `ValueError` naming a bad one)."""
    switches = {"histogram_latencies": True, "summary_latencies": False}
    quantiles: list[tuple[float, float]] = list(DEFAULT_QUANTILES)
    key = ""
    for item in config:
        if "=" in item:
            key, _, value = item.partition("=")
            if key == "summary_quantiles":
                quantiles = []
        else:
            value = item if key == "summary_quantiles" else ""
        if key == "summary_quantiles" and value:
            quantiles.extend(_quantile(part) for part in value.split(",") if part.strip())
        elif key in switches and value.lower() in ("true", "false"):
            switches[key] = value.lower() == "true"
        else:
            raise ValueError(f"--metrics-config: '{item}' is not supported ({_KEYS})")
    if not quantiles:
        raise ValueError("--metrics-config: summary_quantiles names no quantile")
    return MetricsOptions(
        parse_buckets(buckets) if buckets else DEFAULT_BUCKETS,
        switches["histogram_latencies"],
        tuple(quantiles) if switches["summary_latencies"] else (),
    )


def _quantile(text: str) -> tuple[float, float]:
    quantile, sep, error = text.strip().partition(":")
    try:
        pair = (float(quantile), float(error))
    except ValueError:
        pair = (-1.0, -1.0)
    if not sep or not (0 <= pair[0] <= 1 and 0 <= pair[1] <= 1):
        raise ValueError(
            f"--metrics-config: summary_quantiles item '{text}' is not QUANTILE:ERROR (0 to 1)"
        )
    return pair
