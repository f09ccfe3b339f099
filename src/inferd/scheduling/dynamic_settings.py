"""A model's batching and queueing settings, read once from its `dynamic_batching` config.

Triton's fields, plus inferd's opt-in latency target (`inferd.latency_slo_ms` in the model's
`parameters`). Also parses the two per-request parameters that the queue honours: `priority`
and `timeout` (microseconds).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inferd.core.batch_io import BatchIO
from inferd.core.errors import InvalidArgument
from inferd.core.model_config import ModelConfig, ModelQueuePolicy, string_parameter
from inferd.core.request_parameters import non_negative_int
from inferd.core.types import Parameters

LATENCY_SLO_PARAMETER = "inferd.latency_slo_ms"
# The same fields for iterative sequence models, in their `parameters` (`admission.py`).
ADMISSION_PREFIX = "inferd.admission."


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """Triton's `ModelQueuePolicy` for one priority level (0 = unlimited / no timeout)."""

    max_queue_size: int = 0
    default_timeout_ns: int = 0
    allow_timeout_override: bool = False
    delay_on_timeout: bool = False  # timeout_action DELAY; REJECT otherwise

    @classmethod
    def from_config(cls, policy: ModelQueuePolicy) -> QueuePolicy:
        return cls(
            max_queue_size=int(policy.max_queue_size),
            default_timeout_ns=int(policy.default_timeout_microseconds) * 1000,
            allow_timeout_override=bool(policy.allow_timeout_override),
            delay_on_timeout=policy.timeout_action == ModelQueuePolicy.DELAY,
        )

    def timeout_ns(self, parameters: Parameters) -> int:
        """The queue timeout of one request: the default, or a shorter one it asks for."""
        if not self.allow_timeout_override or "timeout" not in parameters:
            return self.default_timeout_ns
        requested = non_negative_int(parameters["timeout"], "timeout") * 1000
        if requested == 0:
            return self.default_timeout_ns
        if self.default_timeout_ns == 0:
            return requested
        # As in Triton, a request may shorten the default timeout but not extend it.
        return min(requested, self.default_timeout_ns)


@dataclass(frozen=True, slots=True)
class BatchingSettings:
    max_batch_size: int
    enabled: bool
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_ns: int = 0
    preserve_ordering: bool = False
    priority_levels: int = 0  # 0: one level, the per-request priority is ignored
    default_priority_level: int = 0
    # One policy per level, index 0 for level 1 (or the only level when levels are off).
    policies: tuple[QueuePolicy, ...] = field(default_factory=lambda: (QueuePolicy(),))
    latency_slo_ns: int = 0  # 0: no adaptive batching
    batch_io: BatchIO | None = None  # ragged inputs, batch inputs and outputs (`ragged.py`)

    @classmethod
    def from_config(cls, config: ModelConfig) -> BatchingSettings:
        """Settings of a complete config; raises `InvalidArgument` / `Unsupported` at load."""
        _refuse_admission(config)
        batch_io = BatchIO.from_config(config)
        enabled = config.max_batch_size > 0 and config.HasField("dynamic_batching")
        if not enabled:
            return cls(max_batch_size=config.max_batch_size, enabled=False, batch_io=batch_io)
        dynamic = config.dynamic_batching
        levels = int(dynamic.priority_levels)
        default_level = int(dynamic.default_priority_level)
        check_default_level(levels, default_level, "default_priority_level")
        default_policy = QueuePolicy.from_config(dynamic.default_queue_policy)
        for level in dynamic.priority_queue_policy:
            if not 1 <= level <= levels:
                raise InvalidArgument(
                    f"priority_queue_policy names level {level}, but priority_levels is {levels}"
                )
        policies = tuple(
            QueuePolicy.from_config(dynamic.priority_queue_policy[level])
            if level in dynamic.priority_queue_policy
            else default_policy
            for level in range(1, max(levels, 1) + 1)
        )
        return cls(
            max_batch_size=config.max_batch_size,
            enabled=True,
            preferred_batch_sizes=tuple(sorted(set(dynamic.preferred_batch_size))),
            max_queue_delay_ns=int(dynamic.max_queue_delay_microseconds) * 1000,
            preserve_ordering=bool(dynamic.preserve_ordering),
            priority_levels=levels,
            default_priority_level=default_level if levels else 1,
            policies=policies,
            latency_slo_ns=_latency_slo_ns(config),
            batch_io=batch_io,
        )

    def level_index(self, parameters: Parameters) -> int:
        """The queue (0 = highest priority) a request goes to; `priority` 0 means the default."""
        if "priority" not in parameters:
            return self.default_priority_level - 1 if self.priority_levels else 0
        priority = non_negative_int(parameters["priority"], "priority")
        if not self.priority_levels:
            return 0  # as in Triton, a model without priority levels ignores the parameter
        if priority == 0:
            return self.default_priority_level - 1
        if priority > self.priority_levels:
            raise InvalidArgument(
                f"priority {priority} is out of range: the model has priority levels "
                f"1 (highest) to {self.priority_levels}"
            )
        return priority - 1


def check_default_level(levels: int, default_level: int, field_name: str) -> None:
    if levels and not 1 <= default_level <= levels:
        raise InvalidArgument(
            f"{field_name} {default_level} must be between 1 and priority_levels ({levels})"
        )


def _refuse_admission(config: ModelConfig) -> None:
    """Only an iterative model reads `inferd.admission.` parameters: another would ignore
    them silently (its queue settings are in `dynamic_batching`)."""
    if config.HasField("sequence_batching") and config.sequence_batching.iterative_sequence:
        return
    named = sorted(key for key in config.parameters if key.startswith(ADMISSION_PREFIX))
    if named:
        raise InvalidArgument(
            f"model parameters {named} apply to iterative sequence models only "
            "(sequence_batching { iterative_sequence: true }); other models set priorities "
            "and queue policies in dynamic_batching"
        )


def _latency_slo_ns(config: ModelConfig) -> int:
    text = string_parameter(config, LATENCY_SLO_PARAMETER)
    if text is None:
        return 0
    try:
        milliseconds = float(text)
    except ValueError:
        milliseconds = 0.0
    if not milliseconds > 0:
        raise InvalidArgument(
            f"parameter '{LATENCY_SLO_PARAMETER}' must be a positive number of milliseconds, "
            f"got '{text}'"
        )
    return int(milliseconds * 1e6)
