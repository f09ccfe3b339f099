"""The config `parameters` the PyTorch backend reads, parsed and checked once at load."""

from __future__ import annotations

from dataclasses import dataclass

from inferd.core.model_config import ModelConfig, bool_parameter, int_parameter


@dataclass(frozen=True, slots=True)
class TorchOptions:
    torch_compile: bool = False
    inference_mode: bool = True
    intra_op_thread_count: int | None = None

    @classmethod
    def from_config(cls, config: ModelConfig) -> TorchOptions:
        return cls(
            torch_compile=bool_parameter(config, "torch_compile", default=False),
            inference_mode=bool_parameter(config, "inference_mode", default=True),
            intra_op_thread_count=int_parameter(config, "intra_op_thread_count", minimum=1),
        )
