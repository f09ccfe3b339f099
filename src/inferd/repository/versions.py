"""Which versions of a model to serve, by the config's `version_policy`."""

from __future__ import annotations

from collections.abc import Iterable

from inferd.core.model_config import ModelVersionPolicy


def select_versions(
    policy: ModelVersionPolicy, available: Iterable[int]
) -> tuple[list[int], list[int]]:
    """(versions to load, ascending; versions the policy names that are not on disk).

    An unset policy means "latest 1", as in Triton.
    """
    present = sorted(set(available))
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return present, []
    if kind == "specific":
        wanted = sorted(set(policy.specific.versions))
        return [v for v in wanted if v in present], [v for v in wanted if v not in present]
    count = policy.latest.num_versions if kind == "latest" else 1
    return (present[-count:] if count > 0 else []), []
