"""An inferd backend plugin serving linear layers stored as `model.npz` (arrays `W` and `b`)."""

from inferd_numpy_backend.backend import NumpyLinearBackend

__all__ = ["NumpyLinearBackend"]
