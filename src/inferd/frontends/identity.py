"""What the server says about itself in server metadata, the same over every protocol."""

from __future__ import annotations

from inferd.core.runtime_settings import NO_CONTROLS, RuntimeControls
from inferd.frontends.shared_memory import SharedMemoryRegistry

DEFAULT_SERVER_NAME = "inferd"
_ALWAYS = ["classification", "model_repository", "model_configuration", "parameters"]


def extensions(
    shared_memory: SharedMemoryRegistry,
    statistics: bool,
    controls: RuntimeControls = NO_CONTROLS,
) -> list[str]:
    """The V2 protocol extensions this server offers, given what was enabled."""
    offered = list(_ALWAYS)
    offered += ["statistics"] if statistics else []
    offered += ["trace"] if controls.trace is not None else []
    offered += ["logging"] if controls.logging is not None else []
    offered += ["system_shared_memory"] if shared_memory.enabled else []
    offered += ["cuda_shared_memory"] if shared_memory.cuda_enabled else []
    return offered
