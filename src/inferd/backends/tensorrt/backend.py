"""TensorRT backend: serves serialized engines (`model.plan`, platform `tensorrt_plan`).

A plan is built for one TensorRT version and one GPU model, so it only runs on GPU instances;
`tensorrt` and a CUDA build of torch (for device memory) are imported on first use.
"""

from __future__ import annotations

from pathlib import Path

from inferd.backends.autocomplete import existing_model_file, model_path, name_backend
from inferd.backends.tensorrt.plan import complete_tensors, describe_engine
from inferd.backends.tensorrt.runtime import (
    PlanModel,
    cuda_available,
    deserialize,
    import_tensorrt,
)
from inferd.core.errors import Unsupported
from inferd.core.model_config import ModelConfig, ModelInstanceGroup


def _kind_name(group: ModelInstanceGroup) -> str:
    return ModelInstanceGroup.Kind.Name(group.kind)


class TensorRTBackend:
    name = "tensorrt"
    platforms = ("tensorrt_plan",)
    default_model_filename = "model.plan"

    def gpu_available(self) -> bool:
        return cuda_available()

    def matches(self, version_path: Path) -> bool:
        return (version_path / self.default_model_filename).is_file()

    def complete_config(
        self, config: ModelConfig, version_path: Path, default_max_batch_size: int
    ) -> None:
        model_file = existing_model_file(config, version_path, self.default_model_filename)
        _, engine = deserialize(model_file.read_bytes(), _first_gpu(config))
        name_backend(config, self.name, self.platforms[0])
        complete_tensors(config, describe_engine(engine, import_tensorrt()), default_max_batch_size)

    def load(self, config: ModelConfig, version_path: Path) -> PlanModel:
        for group in config.instance_group:
            if _kind_name(group) != "KIND_GPU":
                raise Unsupported(
                    f"instance group '{group.name}' is {_kind_name(group)}: TensorRT plans run "
                    "on KIND_GPU instances only (KIND_AUTO falls back to CPU where no GPU is "
                    "visible)"
                )
        return PlanModel(model_path(config, version_path, self.default_model_filename))


def _first_gpu(config: ModelConfig) -> int:
    """The GPU to read the plan on while auto-completing: the first one the config lists."""
    return next((gpu for group in config.instance_group for gpu in group.gpus), 0)
