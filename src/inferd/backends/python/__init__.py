"""The custom Python backend (`backend: "python"`): see docs/python_backend.md.

A model's `model.py` may import the types it receives from here.
"""

from inferd.backends.python.api import Batch, InferenceError, ModelContext, Request
from inferd.backends.python.backend import PythonBackend
from inferd.backends.python.sender import ResponseSender

__all__ = ["Batch", "InferenceError", "ModelContext", "PythonBackend", "Request", "ResponseSender"]
