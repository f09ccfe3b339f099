"""inferd: a model inference server speaking the KServe V2 protocol."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("inferd")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
