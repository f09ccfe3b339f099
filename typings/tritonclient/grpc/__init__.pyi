"""The parts of tritonclient that inferd types; the rest stays untyped."""

from typing import Any

def __getattr__(name: str) -> Any: ...
