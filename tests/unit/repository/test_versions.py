from __future__ import annotations

import pytest

from inferd.core.model_config import ModelConfig, parse_pbtxt
from inferd.repository.versions import select_versions

AVAILABLE = [3, 1, 7, 2]


def _policy(text: str) -> object:
    return parse_pbtxt(text).version_policy


def test_default_is_latest_one() -> None:
    assert select_versions(ModelConfig().version_policy, AVAILABLE) == ([7], [])


@pytest.mark.parametrize(("count", "expected"), [(1, [7]), (2, [3, 7]), (10, [1, 2, 3, 7])])
def test_latest_n(count: int, expected: list[int]) -> None:
    policy = _policy(f"version_policy: {{ latest: {{ num_versions: {count} }} }}")
    assert select_versions(policy, AVAILABLE) == (expected, [])


def test_all() -> None:
    assert select_versions(_policy("version_policy: { all: {} }"), AVAILABLE) == ([1, 2, 3, 7], [])


def test_specific_reports_missing() -> None:
    policy = _policy("version_policy: { specific: { versions: [2, 5, 7] } }")
    assert select_versions(policy, AVAILABLE) == ([2, 7], [5])


def test_no_versions() -> None:
    assert select_versions(ModelConfig().version_policy, []) == ([], [])
