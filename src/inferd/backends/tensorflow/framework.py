"""Import TensorFlow on first use: quiet C++ logs, and GPUs that allocate memory as needed."""

from __future__ import annotations

import contextlib
import functools
import os
from typing import Any

from inferd.backends.base import Device, DeviceKind


@functools.cache
def tensorflow() -> Any:
    """The `tensorflow` module, imported once with inferd's process-wide settings."""
    # Level 2 keeps TF's C++ warnings and errors but drops its INFO chatter; a user's own
    # setting wins. It must be in the environment before the import reads it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        # By default TF reserves nearly all memory of every GPU it sees, starving other
        # backends and models on the same GPUs. RuntimeError: GPUs already initialised (TF was
        # used before inferd imported it), so their settings stay.
        with contextlib.suppress(RuntimeError):
            tf.config.experimental.set_memory_growth(gpu, True)
    return tf


def device_name(device: Device) -> str:
    """TensorFlow's name of an instance's device ("/CPU:0", "/GPU:1")."""
    return "/CPU:0" if device.kind is DeviceKind.CPU else f"/GPU:{device.index}"
