"""Model states, each reported with a reason, as in Triton's repository index."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ModelState(enum.Enum):
    UNKNOWN = "UNKNOWN"
    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class VersionStatus:
    """One row of the repository index."""

    name: str
    version: str
    state: ModelState
    reason: str = ""
