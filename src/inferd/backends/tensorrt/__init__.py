"""TensorRT plans (`model.plan`); `tensorrt` itself is imported only when a plan is loaded."""

from inferd.backends.tensorrt.backend import TensorRTBackend

__all__ = ["TensorRTBackend"]
