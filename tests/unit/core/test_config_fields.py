"""The registry of `ModelConfig` fields: complete, applied at load, and the docs' table."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferd.core.config_audit import (
    audit_config,
    enforce_config_fields,
    markdown_table,
    schema_fields,
)
from inferd.core.config_fields import REGISTRY, Status
from inferd.core.errors import Unsupported
from inferd.core.model_config import parse_pbtxt

DOCS_PAGE = Path(__file__).resolve().parents[3] / "docs" / "model_config_fields.md"
BASE = 'name: "m" max_batch_size: 4 input [{name: "x" data_type: TYPE_FP32 dims: [1]}] '


def test_every_field_of_the_schema_has_an_entry_and_no_entry_is_stale() -> None:
    schema = [key for key, _ in schema_fields()]
    assert len(schema) == len(set(schema)) > 150
    assert sorted(set(schema) - set(REGISTRY)) == []
    assert sorted(set(REGISTRY) - set(schema)) == []


def test_a_field_missing_from_the_registry_would_be_found() -> None:
    # The walk reaches fields nested several messages deep and inside maps' values.
    schema = {key for key, _ in schema_fields()}
    assert "ModelMetrics.MetricControl.HistogramOptions.buckets" in schema
    assert "ModelOptimizationPolicy.ExecutionAccelerators.Accelerator.parameters" in schema
    assert "ModelQueuePolicy.max_queue_size" in schema  # priority_queue_policy's map values


def test_refused_and_warned_entries_say_why() -> None:
    for key, rule in REGISTRY.items():
        if rule.status is not Status.HONOURED:
            assert rule.note, key


def test_a_clean_config_has_nothing_to_report() -> None:
    config = parse_pbtxt(
        BASE + "dynamic_batching { preferred_batch_size: [2] priority_queue_policy { key: 1 "
        "value { max_queue_size: 3 } } } instance_group [{count: 2 kind: KIND_CPU}]"
    )
    audit = audit_config(config)
    assert audit.warnings == [] and audit.refusals == []
    enforce_config_fields(config)


def test_warned_fields_are_named_once_each() -> None:
    config = parse_pbtxt(
        BASE + 'metric_tags [{key: "a" value: "1"}, {key: "b" value: "2"}] '
        'instance_group [{host_policy: "a"}, {host_policy: "b"}] '
    )
    audit = audit_config(config)
    assert [warning.split("'")[1] for warning in audit.warnings] == [
        "instance_group.host_policy",
        "metric_tags",
    ]
    assert audit.refusals == []


def test_dynamic_batching_without_a_batch_axis_is_warned() -> None:
    config = parse_pbtxt(BASE.replace("max_batch_size: 4", "") + "dynamic_batching {}")
    assert audit_config(config).warnings == [
        "'dynamic_batching' has no effect: the model has max_batch_size 0, so it cannot batch"
    ]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ('model_operations { op_library_filename: ["ops.so"] }', "model_operations"),
    ],
)
def test_refused_fields_make_the_load_fail_with_the_reason(extra: str, field: str) -> None:
    with pytest.raises(Unsupported) as info:
        enforce_config_fields(parse_pbtxt(BASE + extra))
    assert f"'{field}' is not supported" in info.value.message


def test_the_docs_table_is_the_registry() -> None:
    assert DOCS_PAGE.read_text() == markdown_table(), (
        "regenerate it: python -m inferd.core.config_audit > docs/model_config_fields.md"
    )
