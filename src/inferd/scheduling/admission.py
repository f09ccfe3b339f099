"""Admission to the running batch of an iterative sequence model: its priorities and queue
policy, read once from the model's `parameters`.

Triton's schema puts `priority_levels` and the queue policies in `dynamic_batching`, which a
model with `sequence_batching` cannot have (one scheduling choice per model), so inferd reads
the same fields as model parameters under `inferd.admission.`. They become the dynamic
batcher's `BatchingSettings` (one policy for every level), so the backlog is the dynamic
batcher's `PriorityQueue` and a request's `priority` and `timeout` parameters mean the same.
"""

from __future__ import annotations

from inferd.core.errors import InvalidArgument
from inferd.core.model_config import ModelConfig, bool_parameter, int_parameter, string_parameter
from inferd.scheduling.dynamic_settings import (
    ADMISSION_PREFIX,
    BatchingSettings,
    QueuePolicy,
    check_default_level,
)

PRIORITY_LEVELS = ADMISSION_PREFIX + "priority_levels"
DEFAULT_PRIORITY_LEVEL = ADMISSION_PREFIX + "default_priority_level"
MAX_QUEUE_SIZE = ADMISSION_PREFIX + "max_queue_size"
DEFAULT_TIMEOUT = ADMISSION_PREFIX + "default_timeout_microseconds"
ALLOW_TIMEOUT_OVERRIDE = ADMISSION_PREFIX + "allow_timeout_override"
TIMEOUT_ACTION = ADMISSION_PREFIX + "timeout_action"
KEYS = frozenset(
    (
        PRIORITY_LEVELS,
        DEFAULT_PRIORITY_LEVEL,
        MAX_QUEUE_SIZE,
        DEFAULT_TIMEOUT,
        ALLOW_TIMEOUT_OVERRIDE,
        TIMEOUT_ACTION,
    )
)
_ACTIONS = {"REJECT": False, "DELAY": True}  # timeout_action -> delay_on_timeout


def admission_settings(config: ModelConfig) -> BatchingSettings:
    """The admission settings of an iterative model; raises `InvalidArgument` at load for a
    bad or unknown `inferd.admission.` parameter."""
    unknown = sorted(
        key for key in config.parameters if key.startswith(ADMISSION_PREFIX) and key not in KEYS
    )
    if unknown:
        raise InvalidArgument(
            f"unknown model parameters {unknown}: the admission parameters are {sorted(KEYS)}"
        )
    levels = int_parameter(config, PRIORITY_LEVELS, minimum=0) or 0
    default_level = int_parameter(config, DEFAULT_PRIORITY_LEVEL, minimum=0) or 0
    check_default_level(levels, default_level, DEFAULT_PRIORITY_LEVEL)
    policy = QueuePolicy(
        max_queue_size=int_parameter(config, MAX_QUEUE_SIZE, minimum=0) or 0,
        default_timeout_ns=(int_parameter(config, DEFAULT_TIMEOUT, minimum=0) or 0) * 1000,
        allow_timeout_override=bool_parameter(config, ALLOW_TIMEOUT_OVERRIDE, False),
        delay_on_timeout=_timeout_action(config),
    )
    return BatchingSettings(
        max_batch_size=config.max_batch_size,
        enabled=True,
        priority_levels=levels,
        default_priority_level=default_level if levels else 1,
        policies=(policy,) * max(levels, 1),
    )


def _timeout_action(config: ModelConfig) -> bool:
    text = string_parameter(config, TIMEOUT_ACTION)
    if not text:
        return False
    action = _ACTIONS.get(text.strip().upper())
    if action is None:
        raise InvalidArgument(
            f"parameter '{TIMEOUT_ACTION}' must be 'REJECT' or 'DELAY', got '{text}'"
        )
    return action
