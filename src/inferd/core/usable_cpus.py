"""How many CPUs this process may run on at once: its CPU affinity (`taskset`, a cpuset) and
its cgroup's CPU quota (a container's `--cpus`, systemd's `CPUQuota`), the smaller of the two.

`os.cpu_count()` counts the machine's CPUs, which a pinned or limited process cannot all use.
A quota is read from the process's own cgroup and every one above it, as Linux applies them:
cgroup v2's `cpu.max`, else cgroup v1's `cpu.cfs_quota_us` over `cpu.cfs_period_us`. Where
there is no cgroup file system (not Linux, a sandbox), only the affinity counts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

CGROUP_ROOT = Path("/sys/fs/cgroup")
MEMBERSHIP = Path("/proc/self/cgroup")


def usable_cpus() -> int:
    """CPUs this process may use at once, at least 1."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return cpus_allowed(affinity or os.cpu_count() or 1, cgroup_cpu_limit(_text(MEMBERSHIP)))


def cpus_allowed(affinity: int, quota: float | None) -> int:
    """Whole CPUs usable under `affinity` CPUs and a `quota` in CPUs (None: no quota),
    rounded up: a quota of 1.5 CPUs lets two threads run at once, for part of the time, and
    one of 0.25 still one."""
    if quota is None:
        return affinity
    return min(affinity, math.ceil(quota))


def cgroup_cpu_limit(membership: str | None, root: Path = CGROUP_ROOT) -> float | None:
    """The tightest CPU quota, in CPUs, over the cgroups in `membership` (the text of
    `/proc/self/cgroup`) and their ancestors under `root`; None when none sets one."""
    if membership is None:
        return None
    quotas = [quota for quota in map(_quota, _cgroups(membership, root)) if quota is not None]
    return min(quotas, default=None)


def quota_cpus(quota: str, period: str) -> float | None:
    """A quota in CPUs from its two fields (v2's `cpu.max` line, or v1's two files), None
    for no quota: v2 writes "max", v1 -1."""
    if quota == "max" or int(quota) < 0:
        return None
    return int(quota) / int(period)


def _cgroups(membership: str, root: Path) -> Iterator[Path]:
    """Each cgroup folder whose CPU quota applies to the process: for its v2 cgroup ("0::")
    and its v1 `cpu` controller's, the process's own and every one above it."""
    for line in membership.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            mount = root
        elif "cpu" in controllers.split(","):
            mount = root / controllers
        else:
            continue
        own = PurePosixPath(path)
        for folder in (own, *own.parents):
            yield mount / folder.relative_to("/")


def _quota(folder: Path) -> float | None:
    v2 = _text(folder / "cpu.max")
    if v2 is not None:
        quota, period = v2.split()
        return quota_cpus(quota, period)
    quota_us, period_us = _text(folder / "cpu.cfs_quota_us"), _text(folder / "cpu.cfs_period_us")
    if quota_us is None or period_us is None:
        return None
    return quota_cpus(quota_us.strip(), period_us.strip())


def _text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:  # absent: no such controller or cgroup here
        return None
