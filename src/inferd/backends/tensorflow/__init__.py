"""TensorFlow SavedModel backend (platform `tensorflow_savedmodel`), imported lazily.

`backend` holds the three lifetimes, `signature` reads a SavedModel's signatures without
loading its weights, `framework` imports TensorFlow quietly and without grabbing GPU memory.
"""

from inferd.backends.tensorflow.backend import TensorFlowBackend

__all__ = ["TensorFlowBackend"]
