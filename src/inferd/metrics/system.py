"""CPU and memory of the host and of this process, read at scrape time (Linux `/proc`).

Triton's CPU metrics (`nv_cpu_*`) describe the whole host; `inferd_process_cpu_utilization`
is this process's share. Utilisations are averages over the interval since the previous
scrape (with one Prometheus scraping, its scrape interval). Where `/proc` is missing (not
Linux) the host metrics are left out; the process's comes from `os.times`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_PROC = Path("/proc")


def _host_cpu() -> tuple[int, int] | None:
    """(busy, total) jiffies of every CPU since boot."""
    try:
        fields = (_PROC / "stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(f) for f in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def _host_memory() -> tuple[int, int] | None:
    """(total, used) bytes; used = total - available, as `free` reports it."""
    try:
        lines = (_PROC / "meminfo").read_text().splitlines()
    except OSError:
        return None
    kib = {line.split(":")[0]: int(line.split()[1]) for line in lines if line.endswith("kB")}
    total = kib.get("MemTotal", 0) * 1024
    return total, total - kib.get("MemAvailable", 0) * 1024


def _process_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class SystemMetrics(Collector):
    """Host CPU utilisation and memory (Triton's names), and this process's CPU utilisation."""

    def __init__(self) -> None:
        self._wall = time.monotonic()
        self._process = _process_cpu_seconds()
        self._host = _host_cpu()

    def collect(self) -> Iterator[Metric]:
        wall, process, host = time.monotonic(), _process_cpu_seconds(), _host_cpu()
        elapsed = wall - self._wall
        yield GaugeMetricFamily(
            "inferd_process_cpu_utilization",
            "CPU time this process used per second since the previous scrape (1 = one core)",
            value=(process - self._process) / elapsed if elapsed > 0 else 0.0,
        )
        if host is not None and self._host is not None:
            total = host[1] - self._host[1]
            yield GaugeMetricFamily(
                "nv_cpu_utilization",
                "Host CPU utilisation since the previous scrape (0.0 - 1.0)",
                value=(host[0] - self._host[0]) / total if total > 0 else 0.0,
            )
        self._wall, self._process, self._host = wall, process, host
        memory = _host_memory()
        if memory is not None:
            yield GaugeMetricFamily(
                "nv_cpu_memory_total_bytes", "Host memory, in bytes", value=memory[0]
            )
            yield GaugeMetricFamily(
                "nv_cpu_memory_used_bytes", "Host memory in use, in bytes", value=memory[1]
            )
