"""The PromQL subset that deploy/grafana/render_panels.py evaluates agrees with Prometheus on
hand-computed cases, every query of the dashboard parses, and the panels draw into a PNG."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

FOLDER = Path(__file__).parents[3] / "deploy" / "grafana"
sys.path.insert(0, str(FOLDER))

from promql_subset import Labels, Scrape, parse  # noqa: E402


def labels(**items: str) -> Labels:
    return frozenset(items.items())


def scrapes() -> list[Scrape]:
    """Two models' counters and a histogram at 0 s and 10 s."""

    def at(t: float, k: float) -> Scrape:
        samples = {
            ("nv_inference_request_success", labels(model="a", version="1")): 100 * k,
            ("nv_inference_request_success", labels(model="a", version="2")): 50 * k,
            ("nv_inference_request_success", labels(model="b", version="1")): 10 * k,
            ("nv_inference_exec_count", labels(model="a", version="1")): 30 * k,
            ("g", labels(model="a")): 7.0,
        }
        # 100 observations per step: 50 at or below 0.1, 90 at or below 1, 100 in all.
        for le, count in (("0.1", 50), ("1.0", 90), ("+Inf", 100)):
            samples["h_bucket", labels(model="a", le=le)] = count * k
        return t, samples

    return [at(0.0, 0), at(10.0, 1)]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (
            'sum by (model) (rate(nv_inference_request_success{model=~".*"}[$__rate_interval]))',
            {"a": 15.0, "b": 1.0},
        ),
        (
            'sum by (model) (increase(nv_inference_request_success{model="b"}[$__range]))',
            {"b": 10.0},
        ),
        (
            "sum by (model) (rate(nv_inference_request_success[1m])) / "
            "sum by (model) (rate(nv_inference_exec_count[1m]))",
            {"a": 5.0},
        ),
        # The 0.5 rank is the top of the first bucket; 0.7 is half way into (0.1, 1].
        ("histogram_quantile(0.5, sum by (model, le) (rate(h_bucket[1m])))", {"a": 0.1}),
        ("histogram_quantile(0.7, sum by (model, le) (rate(h_bucket[1m])))", {"a": 0.55}),
        ("histogram_quantile(0.99, sum by (model, le) (rate(h_bucket[1m])))", {"a": 1.0}),
        ('sum by (model) (g{model=~"a|c"})', {"a": 7.0}),
    ],
)
def test_queries_as_prometheus_answers_them(expression: str, expected: dict[str, float]) -> None:
    query = parse(expression, {"$__rate_interval": 20.0, "$__range": 10.0})
    vector = query.evaluate(scrapes(), 1)
    got = {dict(k).get("model", ""): v for k, v in vector.items()}
    assert got == pytest.approx(expected)


def test_a_rate_needs_two_scrapes_and_an_empty_histogram_has_no_quantile() -> None:
    rate = parse("rate(nv_inference_exec_count[1m])", {})
    assert rate.evaluate(scrapes(), 0) == {}
    quantile = parse("histogram_quantile(0.5, sum by (le) (rate(h_bucket[1m])))", {})
    empty = [(0.0, scrapes()[0][1]), (1.0, scrapes()[0][1])]
    (value,) = quantile.evaluate(empty, 1).values()
    assert math.isnan(value)


def test_every_dashboard_query_parses_and_the_panels_draw(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from draw_panels import draw
    from render_panels import DASHBOARD, series

    dashboard = json.loads(DASHBOARD.read_text())
    output = tmp_path / "dashboard.png"
    draw(dashboard, scrapes(), series, output)
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
