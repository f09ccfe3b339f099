"""PyTorch backend: TorchScript files, `torch.export` archives and eager modules from model.py.

torch is imported only when a model of this backend is completed or loaded.
"""

from inferd.backends.pytorch.backend import PyTorchBackend

__all__ = ["PyTorchBackend"]
