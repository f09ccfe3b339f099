"""Every field of Triton's `ModelConfig` (nested messages too), and what inferd does with it.

A field is honoured, accepted with a load-time warning that it has no effect, or refused
(the model is UNAVAILABLE with the reason) where serving without it would differ materially
from Triton. `config_audit.py` applies the table at load and renders it for the docs; a unit
test fails when a field of `model_config_pb2` has no entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Status(Enum):
    HONOURED = "honoured"
    WARNED = "no effect (warning)"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Rule:
    status: Status
    note: str


def _rules(status: Status, note: str, *names: str) -> dict[str, Rule]:
    return dict.fromkeys(names, Rule(status, note))


H, W, R = Status.HONOURED, Status.WARNED, Status.REFUSED
_OPT = "ModelOptimizationPolicy"
_CUDA = f"{_OPT}.Cuda"
_SEQ = "ModelSequenceBatching"
_TENSORRT_ONLY = "TensorRT I/O detail inferd's TensorRT backend does not use"

# Keys: a message's name inside the `inference` package, a dot, the field's name.
REGISTRY: dict[str, Rule] = {
    **_rules(H, "", "ModelConfig.name", "ModelConfig.platform", "ModelConfig.backend"),
    **_rules(W, "inferd picks the backend from `backend` / `platform`", "ModelConfig.runtime"),
    **_rules(
        H,
        "versions served",
        "ModelConfig.version_policy",
        "ModelVersionPolicy.latest",
        "ModelVersionPolicy.Latest.num_versions",
        "ModelVersionPolicy.all",
        "ModelVersionPolicy.specific",
        "ModelVersionPolicy.Specific.versions",
    ),
    **_rules(H, "", "ModelConfig.max_batch_size", "ModelConfig.input", "ModelConfig.output"),
    **_rules(
        H,
        "",
        "ModelInput.name",
        "ModelInput.data_type",
        "ModelInput.dims",
        "ModelInput.reshape",
        "ModelTensorReshape.shape",
        "ModelOutput.name",
        "ModelOutput.data_type",
        "ModelOutput.dims",
        "ModelOutput.reshape",
    ),
    "ModelInput.format": Rule(H, "informational, as in Triton"),
    "ModelInput.optional": Rule(
        H,
        "a request may leave the input out (onnxruntime, pytorch, python; refused on other "
        "backends, and by onnxruntime on a graph input without a default value)",
    ),
    "ModelInput.allow_ragged_batch": Rule(
        H,
        "requests of different shapes share a batch; the model gets the input flattened "
        "(onnxruntime, pytorch, python; refused on other backends and with sequence_batching); "
        "no effect with max_batch_size 0 (see ragged_batching.md)",
    ),
    **_rules(
        R,
        "shape tensors (TensorRT shape bindings) are not supported",
        "ModelInput.is_shape_tensor",
        "ModelOutput.is_shape_tensor",
    ),
    **_rules(
        W,
        _TENSORRT_ONLY,
        "ModelInput.is_non_linear_format_io",
        "ModelOutput.is_non_linear_format_io",
    ),
    "ModelOutput.label_filename": Rule(
        H, "labels of the classification extension's answers (docs/classification.md)"
    ),
    **_rules(
        H,
        "every kind, as Triton builds them (onnxruntime, pytorch, python; refused on other "
        "backends, with sequence_batching and with max_batch_size 0; see ragged_batching.md)",
        "ModelConfig.batch_input",
        "BatchInput.kind",
        "BatchInput.target_name",
        "BatchInput.data_type",
        "BatchInput.source_input",
        "ModelConfig.batch_output",
        "BatchOutput.target_name",
        "BatchOutput.kind",
        "BatchOutput.source_input",
    ),
    **_rules(H, "see its fields", "ModelConfig.optimization"),
    **_rules(
        H,
        "ONNX Runtime's graph optimisation level; other backends ignore it",
        f"{_OPT}.graph",
        f"{_OPT}.Graph.level",
    ),
    **_rules(
        H,
        "ONNX Runtime: `tensorrt` on GPU instances; other backends ignore it",
        f"{_OPT}.execution_accelerators",
        f"{_OPT}.ExecutionAccelerators.gpu_execution_accelerator",
        f"{_OPT}.ExecutionAccelerators.Accelerator.name",
        f"{_OPT}.ExecutionAccelerators.Accelerator.parameters",
    ),
    **_rules(
        W,
        "CPU accelerators (OpenVINO) are not used",
        f"{_OPT}.ExecutionAccelerators.cpu_execution_accelerator",
    ),
    **_rules(
        W,
        "a performance hint inferd does not use",
        f"{_OPT}.priority",
        f"{_OPT}.cuda",
        f"{_CUDA}.graphs",
        f"{_CUDA}.busy_wait_events",
        f"{_CUDA}.graph_spec",
        f"{_CUDA}.GraphSpec.batch_size",
        f"{_CUDA}.GraphSpec.input",
        f"{_CUDA}.GraphSpec.Shape.dim",
        f"{_CUDA}.GraphSpec.graph_lower_bound",
        f"{_CUDA}.GraphSpec.LowerBound.batch_size",
        f"{_CUDA}.GraphSpec.LowerBound.input",
        f"{_CUDA}.output_copy_stream",
        f"{_OPT}.input_pinned_memory",
        f"{_OPT}.PinnedMemoryBuffer.enable",
        f"{_OPT}.output_pinned_memory",
        f"{_OPT}.gather_kernel_buffer_threshold",
        f"{_OPT}.eager_batching",
    ),
    "ModelConfig.dynamic_batching": Rule(
        H, "no effect (warning) on a model with max_batch_size 0, which cannot batch"
    ),
    **_rules(
        H,
        "",
        "ModelDynamicBatching.preferred_batch_size",
        "ModelDynamicBatching.max_queue_delay_microseconds",
        "ModelDynamicBatching.preserve_ordering",
        "ModelDynamicBatching.priority_levels",
        "ModelDynamicBatching.default_priority_level",
        "ModelDynamicBatching.default_queue_policy",
        "ModelDynamicBatching.priority_queue_policy",
        "ModelQueuePolicy.timeout_action",
        "ModelQueuePolicy.default_timeout_microseconds",
        "ModelQueuePolicy.allow_timeout_override",
        "ModelQueuePolicy.max_queue_size",
    ),
    **_rules(
        H,
        "",
        "ModelConfig.sequence_batching",
        f"{_SEQ}.direct",
        f"{_SEQ}.StrategyDirect.max_queue_delay_microseconds",
        f"{_SEQ}.StrategyDirect.minimum_slot_utilization",
        f"{_SEQ}.oldest",
        f"{_SEQ}.StrategyOldest.max_candidate_sequences",
        f"{_SEQ}.StrategyOldest.preferred_batch_size",
        f"{_SEQ}.StrategyOldest.max_queue_delay_microseconds",
        f"{_SEQ}.StrategyOldest.preserve_ordering",
        f"{_SEQ}.max_sequence_idle_microseconds",
        f"{_SEQ}.control_input",
        f"{_SEQ}.ControlInput.name",
        f"{_SEQ}.ControlInput.control",
        f"{_SEQ}.Control.kind",
        f"{_SEQ}.Control.int32_false_true",
        f"{_SEQ}.Control.fp32_false_true",
        f"{_SEQ}.Control.bool_false_true",
        f"{_SEQ}.Control.data_type",
        f"{_SEQ}.state",
        f"{_SEQ}.State.input_name",
        f"{_SEQ}.State.output_name",
        f"{_SEQ}.State.data_type",
        f"{_SEQ}.State.dims",
        f"{_SEQ}.State.initial_state",
        f"{_SEQ}.InitialState.data_type",
        f"{_SEQ}.InitialState.dims",
        f"{_SEQ}.InitialState.zero_data",
        f"{_SEQ}.InitialState.data_file",
        f"{_SEQ}.InitialState.name",
        f"{_SEQ}.iterative_sequence",
    ),
    **_rules(
        W,
        "a memory hint for TensorRT state buffers, not used",
        f"{_SEQ}.State.use_same_buffer_for_input_output",
        f"{_SEQ}.State.use_growable_memory",
    ),
    **_rules(
        H,
        "",
        "ModelConfig.ensemble_scheduling",
        "ModelEnsembling.step",
        "ModelEnsembling.Step.model_name",
        "ModelEnsembling.Step.model_version",
        "ModelEnsembling.Step.input_map",
        "ModelEnsembling.Step.output_map",
    ),
    "ModelEnsembling.Step.model_namespace": Rule(W, "model namespacing is not implemented"),
    "ModelEnsembling.max_inflight_requests": Rule(
        H, "at most this many requests in flight per step (0: unbounded)"
    ),
    **_rules(
        H,
        "",
        "ModelConfig.instance_group",
        "ModelInstanceGroup.name",
        "ModelInstanceGroup.kind",
        "ModelInstanceGroup.count",
        "ModelInstanceGroup.gpus",
    ),
    "ModelInstanceGroup.profile": Rule(H, "TensorRT optimisation profiles"),
    **_rules(
        H,
        "with --rate-limit execution_count (see rate_limiter.md); ignored when off, as in Triton",
        "ModelInstanceGroup.rate_limiter",
        "ModelRateLimiter.resources",
        "ModelRateLimiter.Resource.name",
        "ModelRateLimiter.Resource.global",
        "ModelRateLimiter.Resource.count",
        "ModelRateLimiter.priority",
    ),
    **_rules(
        W,
        "secondary devices are not used",
        "ModelInstanceGroup.secondary_devices",
        "ModelInstanceGroup.SecondaryDevice.kind",
        "ModelInstanceGroup.SecondaryDevice.device_id",
    ),
    "ModelInstanceGroup.passive": Rule(
        H, "loaded, but the scheduler gives them no work (every one passive: requests refused)"
    ),
    "ModelInstanceGroup.host_policy": Rule(W, "host policies (NUMA binding) are not used"),
    "ModelConfig.default_model_filename": Rule(H, ""),
    "ModelConfig.cc_model_filenames": Rule(
        W, "per-compute-capability model files are not chosen: default_model_filename loads"
    ),
    "ModelConfig.metric_tags": Rule(W, "not added to the metrics' labels"),
    **_rules(
        H,
        "passed to the backend; unknown keys are ignored",
        "ModelConfig.parameters",
        "ModelParameter.string_value",
    ),
    **_rules(
        H,
        "every sample runs on every instance before the model reports READY; a failing one "
        "leaves it UNAVAILABLE (refused on an ensemble, as in Triton)",
        "ModelConfig.model_warmup",
        "ModelWarmup.name",
        "ModelWarmup.batch_size",
        "ModelWarmup.inputs",
        "ModelWarmup.Input.data_type",
        "ModelWarmup.Input.dims",
        "ModelWarmup.Input.zero_data",
        "ModelWarmup.Input.random_data",
        "ModelWarmup.Input.input_data_file",
        "ModelWarmup.count",
    ),
    **_rules(
        R,
        "custom operation libraries are not loaded",
        "ModelConfig.model_operations",
        "ModelOperations.op_library_filename",
    ),
    **_rules(
        H,
        "refused on a backend that cannot stream responses",
        "ModelConfig.model_transaction_policy",
        "ModelTransactionPolicy.decoupled",
    ),
    **_rules(
        R,
        "repository agents (checksum, decryption) are not run: the model files would load "
        "unchecked or unreadable",
        "ModelConfig.model_repository_agents",
        "ModelRepositoryAgents.agents",
        "ModelRepositoryAgents.Agent.name",
        "ModelRepositoryAgents.Agent.parameters",
    ),
    **_rules(
        H,
        "with --cache-config local,size=BYTES (a warning at load without it); refused with "
        "sequence batching or decoupled, as in Triton",
        "ModelConfig.response_cache",
        "ModelResponseCache.enable",
    ),
    **_rules(
        H,
        "a latency histogram's buckets, by family (nv_inference_first_response_histogram_ms, "
        "as in Triton, and inferd's inferd_*_duration_seconds)",
        "ModelConfig.model_metrics",
        "ModelMetrics.metric_control",
        "ModelMetrics.MetricControl.metric_identifier",
        "ModelMetrics.MetricControl.MetricIdentifier.family",
        "ModelMetrics.MetricControl.histogram_options",
        "ModelMetrics.MetricControl.HistogramOptions.buckets",
    ),
}
