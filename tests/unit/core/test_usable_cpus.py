"""The CPUs a process may use (`usable_cpus`): its affinity, read for real, and its cgroup's
quota, read from cgroup files written here in both formats."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from inferd.core.usable_cpus import cgroup_cpu_limit, cpus_allowed, quota_cpus, usable_cpus


@contextmanager
def on_cpus(count: int) -> Iterator[None]:
    """The calling thread (and the threads it starts meanwhile) pinned to `count` of the CPUs
    it may use; the test is skipped where it may use fewer."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < count:
        pytest.skip(f"needs {count} CPUs, this process may use {len(allowed)}")
    os.sched_setaffinity(0, allowed[:count])
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


def test_a_process_pinned_to_one_cpu_may_use_one() -> None:
    with on_cpus(1):
        assert usable_cpus() == 1


def test_a_process_pinned_to_two_cpus_may_use_two_unless_a_quota_says_fewer() -> None:
    with on_cpus(2):
        limit = cgroup_cpu_limit(Path("/proc/self/cgroup").read_text())
        if limit is not None and limit <= 1:
            pytest.skip(f"this process's cgroup allows {limit} CPUs")
        assert usable_cpus() == 2


@pytest.mark.parametrize(
    ("affinity", "quota", "usable"),
    [
        (4, None, 4),  # no quota: the affinity
        (4, 2.0, 2),  # the quota, when smaller
        (2, 8.0, 2),  # the affinity, when smaller
        (4, 1.5, 2),  # part of a CPU counts as one
        (4, 0.25, 1),  # part of one CPU is one
    ],
)
def test_the_smaller_of_affinity_and_quota_rounded_up(
    affinity: int, quota: float | None, usable: int
) -> None:
    assert cpus_allowed(affinity, quota) == usable


def test_quota_fields_in_both_formats() -> None:
    assert quota_cpus("max", "100000") is None  # v2: no quota
    assert quota_cpus("-1", "100000") is None  # v1: no quota
    assert quota_cpus("150000", "100000") == 1.5
    assert quota_cpus("50000", "100000") == 0.5


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def test_v2_the_tightest_quota_of_the_cgroup_and_those_above_it(tmp_path: Path) -> None:
    write(tmp_path / "system.slice", "cpu.max", "300000 100000\n")
    write(tmp_path / "system.slice" / "inferd.service", "cpu.max", "max 100000\n")
    membership = "0::/system.slice/inferd.service\n"
    assert cgroup_cpu_limit(membership, tmp_path) == 3.0
    write(tmp_path / "system.slice" / "inferd.service", "cpu.max", "200000 100000\n")
    assert cgroup_cpu_limit(membership, tmp_path) == 2.0


def test_v1_the_cpu_controller_quota_others_ignored(tmp_path: Path) -> None:
    cpu = tmp_path / "cpu,cpuacct" / "docker" / "abc"
    write(cpu, "cpu.cfs_quota_us", "50000\n")
    write(cpu, "cpu.cfs_period_us", "100000\n")
    write(tmp_path / "memory" / "docker" / "abc", "cpu.max", "100000 100000\n")  # not cpu's
    membership = "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n"
    assert cgroup_cpu_limit(membership, tmp_path) == 0.5
    write(cpu, "cpu.cfs_quota_us", "-1\n")
    assert cgroup_cpu_limit(membership, tmp_path) is None


def test_no_cgroup_files_no_quota(tmp_path: Path) -> None:
    assert cgroup_cpu_limit("0::/user.slice\n", tmp_path) is None
    assert cgroup_cpu_limit(None, tmp_path) is None
