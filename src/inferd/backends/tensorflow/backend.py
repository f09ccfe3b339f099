"""TensorFlow SavedModel backend: one restored SavedModel per device, shared by its instances.

A SavedModel is a folder (`model.savedmodel/` in the version folder, as in Triton). Each instance
calls the chosen signature's concrete function under `tf.device` of its own device; instances on
one device share one restored SavedModel, since TensorFlow functions may be called from several
threads at once (and release the GIL while they run).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from inferd.backends.autocomplete import complete_tensors, model_path, name_backend
from inferd.backends.base import BatchRequest, Device, DeviceKind
from inferd.backends.tensorflow.framework import device_name, tensorflow
from inferd.backends.tensorflow.signature import (
    Signature,
    check_config,
    check_known_ranks,
    read_signature,
    signature_key,
)
from inferd.core.errors import InvalidArgument, Unavailable, Unsupported
from inferd.core.model_config import ModelConfig
from inferd.core.types import Array


class TensorFlowBackend:
    name = "tensorflow"
    platforms = ("tensorflow_savedmodel",)
    default_model_filename = "model.savedmodel"

    def gpu_available(self) -> bool:
        return bool(tensorflow().config.list_physical_devices("GPU"))

    def matches(self, version_path: Path) -> bool:
        return (version_path / self.default_model_filename / "saved_model.pb").is_file()

    def complete_config(
        self, config: ModelConfig, version_path: Path, default_max_batch_size: int
    ) -> None:
        signature = _signature(config, version_path)
        name_backend(config, self.name, self.platforms[0])
        check_known_ranks(config, signature)
        complete_tensors(
            config,
            signature.inputs,
            signature.outputs,
            default_max_batch_size,
            signature.description,
        )

    def load(self, config: ModelConfig, version_path: Path) -> SavedModel:
        signature = _signature(config, version_path)
        check_config(config, signature)  # auto-complete may have been switched off
        return SavedModel(model_path(config, version_path, self.default_model_filename), signature)


def _signature(config: ModelConfig, version_path: Path) -> Signature:
    if config.platform == "tensorflow_graphdef":
        raise Unsupported("TensorFlow GraphDef models are not supported: export a SavedModel")
    saved_model = model_path(config, version_path, TensorFlowBackend.default_model_filename)
    if not (saved_model / "saved_model.pb").is_file():
        raise InvalidArgument(
            f"SavedModel folder '{saved_model.name}' (with saved_model.pb) not found in version "
            "folder"
        )
    return read_signature(saved_model, signature_key(config))


class SavedModel:
    """SavedModels restored per device on first use, each shared by that device's instances."""

    def __init__(self, path: Path, signature: Signature) -> None:
        self._path = path
        self._signature = signature
        self._restored: dict[Device, Any] = {}
        self._lock = threading.Lock()

    def restored(self, device: Device) -> Any:
        with self._lock:
            restored = self._restored.get(device)
            if restored is None:
                restored = _restore(self._path, self._signature, device)
                self._restored[device] = restored
            return restored

    def create_instance(self, device: Device, name: str) -> TensorFlowInstance:
        restored = self.restored(device)
        return TensorFlowInstance(restored, restored.signatures[self._signature.key], device)

    def close(self) -> None:
        with self._lock:
            self._restored.clear()


def _restore(path: Path, signature: Signature, device: Device) -> Any:
    tf = tensorflow()
    if device.kind is DeviceKind.GPU:
        visible = len(tf.config.list_logical_devices("GPU"))
        if device.index >= visible:
            # Without this check TF's soft placement would quietly run the model on the CPU.
            raise Unavailable(
                f"KIND_GPU instance on GPU {device.index} asked for, but TensorFlow sees "
                f"{visible} GPU(s) here"
            )
    try:
        with tf.device(device_name(device)):  # variables are created on the instance's device
            return tf.saved_model.load(str(path), tags=list(signature.tags))
    except Exception as exc:
        raise Unavailable(f"TensorFlow failed to load SavedModel '{path.name}': {exc}") from exc


class TensorFlowInstance:
    def __init__(self, restored: Any, function: Any, device: Device) -> None:
        self._tf = tensorflow()
        self._restored = restored  # a signature function holds the model's variables weakly
        self._function = function
        self._device = device_name(device)
        # The signature's dtypes, so that an empty BYTES array still becomes a tf.string tensor.
        _, specs = function.structured_input_signature
        self._dtypes = {name: spec.dtype for name, spec in specs.items()}

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> dict[str, Array]:
        tf = self._tf
        with tf.device(self._device):
            feed = {
                name: tf.convert_to_tensor(array, dtype=self._dtypes[name])
                for name, array in inputs.items()
            }
            try:
                results = self._function(**feed)
            except tf.errors.InvalidArgumentError as exc:
                # Shapes the config allows (-1 dims) that the graph itself rejects: the
                # client's fault, not the server's.
                raise InvalidArgument(f"TensorFlow rejected the inputs: {exc.message}") from exc
        # tf.string tensors come out as object arrays of bytes, which is what BYTES outputs are.
        return {name: results[name].numpy() for name in output_names}

    def close(self) -> None:
        self._function = None
        self._restored = None
