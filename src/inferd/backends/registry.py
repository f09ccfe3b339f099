"""Find backends by name through the `inferd.backends` entry-point group, loading each lazily.

Built-in backends register exactly as third-party packages do, in their package metadata:

    [project.entry-points."inferd.backends"]
    mybackend = "my_package.backend:MyBackend"
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from inferd.backends.base import Backend
from inferd.core.errors import InvalidArgument, Unavailable
from inferd.core.model_config import ModelConfig

ENTRY_POINT_GROUP = "inferd.backends"

# Triton platform names -> the backend that serves them.
PLATFORM_BACKENDS = {
    "onnxruntime_onnx": "onnxruntime",
    "pytorch_libtorch": "pytorch",
    "pytorch_torchscript": "pytorch",
    "tensorflow_savedmodel": "tensorflow",
    "tensorflow_graphdef": "tensorflow",
    "tensorrt_plan": "tensorrt",
}

logger = logging.getLogger(__name__)

BackendFactory = Callable[[], Backend]


def _entry_point_factory(point: EntryPoint) -> BackendFactory:
    def create() -> Backend:
        backend_class = point.load()
        backend: Backend = backend_class()
        return backend

    return create


class BackendRegistry:
    """Backend names -> factories; each backend is created on first use and then reused."""

    def __init__(self, factories: dict[str, BackendFactory] | None = None) -> None:
        self._factories: dict[str, BackendFactory] = {}
        if factories is None:
            for point in entry_points(group=ENTRY_POINT_GROUP):
                self._factories[point.name] = _entry_point_factory(point)
        else:
            self._factories.update(factories)
        self._backends: dict[str, Backend] = {}

    def names(self) -> list[str]:
        return sorted(self._factories)

    def get(self, name: str) -> Backend:
        backend = self._backends.get(name)
        if backend is not None:
            return backend
        factory = self._factories.get(name)
        if factory is None:
            known = ", ".join(self.names()) or "none"
            raise InvalidArgument(f"unknown backend '{name}' (installed: {known})")
        try:
            backend = factory()
        except Exception as exc:
            raise Unavailable(f"backend '{name}' could not be loaded: {exc}") from exc
        self._backends[name] = backend
        return backend

    def resolve(self, config: ModelConfig, version_paths: list[Path]) -> Backend:
        """The backend a model config asks for: by `backend`, then `platform`, then its files."""
        if config.backend:
            return self.get(config.backend)
        if config.platform:
            name = PLATFORM_BACKENDS.get(config.platform)
            if name is None:
                raise InvalidArgument(f"unknown platform '{config.platform}'")
            return self.get(name)
        for name in self.names():
            try:
                backend = self.get(name)
            except Unavailable as exc:
                logger.warning("skipping backend plugin: %s", exc.message)
                continue
            if any(backend.matches(path) for path in version_paths):
                return backend
        raise InvalidArgument(
            "the config names no backend or platform and no installed backend recognises the "
            "model files"
        )
