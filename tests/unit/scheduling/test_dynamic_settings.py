"""Batching settings are checked once, when the model loads."""

from __future__ import annotations

import pytest

from inferd.core.errors import InvalidArgument
from inferd.core.model_config import parse_pbtxt
from inferd.scheduling.dynamic_settings import BatchingSettings, QueuePolicy
from tests.unit.scheduling.fakes import MODEL, settings


def test_no_dynamic_batching_means_batching_off() -> None:
    assert not settings().enabled
    assert not settings("dynamic_batching { }", max_batch_size=0).enabled


def test_fields_are_read() -> None:
    read = settings(
        """dynamic_batching {
             preferred_batch_size: [ 4, 2, 4 ] max_queue_delay_microseconds: 150
             preserve_ordering: true priority_levels: 3 default_priority_level: 2
             default_queue_policy { max_queue_size: 7 }
             priority_queue_policy { key: 1 value { default_timeout_microseconds: 5
                                                     timeout_action: DELAY } }
           }
           parameters { key: "inferd.latency_slo_ms" value { string_value: "2.5" } }"""
    )
    assert read.preferred_batch_sizes == (2, 4)
    assert read.max_queue_delay_ns == 150_000
    assert read.preserve_ordering
    assert read.policies == (
        QueuePolicy(default_timeout_ns=5000, delay_on_timeout=True),
        QueuePolicy(max_queue_size=7),
        QueuePolicy(max_queue_size=7),
    )
    assert read.latency_slo_ns == 2_500_000
    assert read.level_index({}) == 1
    assert read.level_index({"priority": 0}) == 1
    assert read.level_index({"priority": 3}) == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("dynamic_batching { priority_levels: 2 default_priority_level: 3 }", "default_priority"),
        ("dynamic_batching { priority_levels: 2 }", "default_priority"),
        (
            "dynamic_batching { priority_levels: 1 default_priority_level: 1 "
            "priority_queue_policy { key: 2 value { } } }",
            "priority_queue_policy",
        ),
        (
            'dynamic_batching { } parameters { key: "inferd.latency_slo_ms" '
            'value { string_value: "fast" } }',
            "latency_slo_ms",
        ),
        (
            'dynamic_batching { } parameters { key: "inferd.latency_slo_ms" '
            'value { string_value: "-3" } }',
            "latency_slo_ms",
        ),
    ],
)
def test_invalid_settings_fail_the_load(extra: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        settings(extra)


def test_ragged_batching_is_read_with_the_settings() -> None:
    config = parse_pbtxt(MODEL.format(max_batch_size=4) + "dynamic_batching { }")
    assert BatchingSettings.from_config(config).batch_io is None
    config.input[0].allow_ragged_batch = True
    batch_io = BatchingSettings.from_config(config).batch_io
    assert batch_io is not None and batch_io.ragged == {"x"}
    config.ClearField("dynamic_batching")  # ragged without the batcher: still flattened
    assert BatchingSettings.from_config(config).batch_io == batch_io


def test_a_request_timeout_only_shortens_the_default() -> None:
    policy = QueuePolicy(default_timeout_ns=10_000_000, allow_timeout_override=True)
    assert policy.timeout_ns({}) == 10_000_000
    assert policy.timeout_ns({"timeout": 2000}) == 2_000_000
    assert policy.timeout_ns({"timeout": 50_000}) == 10_000_000
    assert QueuePolicy(allow_timeout_override=True).timeout_ns({"timeout": 7}) == 7000
    assert QueuePolicy(default_timeout_ns=5).timeout_ns({"timeout": 1}) == 5
