"""Metrics of remote instances for the server's `/metrics`: per-batch counts and times by
model, version, instance and node, and each host process's memory and the implicit states it
holds, read every few seconds.

In-process instances are not listed here: the server's own per-model metrics cover them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from inferd.cluster.host import HostUsage

logger = logging.getLogger(__name__)

REFRESH_S = 5.0
USAGE_TIMEOUT_S = 2.0
LABELS = ["model", "version", "instance", "node"]


@dataclass(slots=True)
class BatchCounters:
    """What the ingress saw of one remote instance's batches (updated on the event loop)."""

    model: str
    version: str
    instance: str
    node: str = ""
    executions: int = 0
    compute_ns: int = 0  # as the host measured the backend's run
    round_trip_ns: int = 0  # the whole call, as the ingress saw it: compute plus transfer

    def labels(self) -> list[str]:
        return [self.model, self.version, self.instance, self.node]


class ClusterTelemetry:
    """A Prometheus collector over the remote instances that are serving, and the thread
    that reads their hosts' memory."""

    def __init__(self) -> None:
        self._hosts: dict[int, tuple[BatchCounters, Any]] = {}
        self._usage: dict[int, HostUsage] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._refresh, name="host-usage", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def watch(self, counters: BatchCounters, host: Any) -> None:
        with self._lock:
            self._hosts[id(counters)] = (counters, host)

    def forget(self, counters: BatchCounters) -> None:
        with self._lock:
            self._hosts.pop(id(counters), None)
            self._usage.pop(id(counters), None)

    def collect(self) -> Iterator[Metric]:
        executions = CounterMetricFamily(
            "inferd_instance_execution", "Batches run by a remote instance", labels=LABELS
        )
        compute = CounterMetricFamily(
            "inferd_instance_compute_duration_us",
            "Time a remote instance's backend spent on its batches, as its host measured it",
            labels=LABELS,
        )
        round_trip = CounterMetricFamily(
            "inferd_instance_round_trip_duration_us",
            "Time the server waited for a remote instance's batches: compute plus transfer",
            labels=LABELS,
        )
        rss = GaugeMetricFamily(
            "inferd_host_resident_memory_bytes", "Resident memory of an instance's host process",
            labels=LABELS,
        )  # fmt: skip
        device = GaugeMetricFamily(
            "inferd_host_device_memory_bytes",
            "GPU memory an instance's host process holds through PyTorch (0 without)",
            labels=LABELS,
        )
        states = GaugeMetricFamily(
            "inferd_host_sequence_states",
            "Sequences whose implicit states an instance's host holds",
            labels=LABELS,
        )
        state_bytes = GaugeMetricFamily(
            "inferd_host_sequence_state_bytes",
            "Bytes of the implicit states an instance's host holds",
            labels=LABELS,
        )
        with self._lock:
            hosts = list(self._hosts.items())
            usage = dict(self._usage)
        for key, (counters, _) in hosts:
            labels = counters.labels()
            executions.add_metric(labels, counters.executions)
            compute.add_metric(labels, counters.compute_ns / 1000)
            round_trip.add_metric(labels, counters.round_trip_ns / 1000)
            if key in usage:
                rss.add_metric(labels, usage[key].rss_bytes)
                device.add_metric(labels, usage[key].device_memory_bytes)
                states.add_metric(labels, usage[key].sequence_states)
                state_bytes.add_metric(labels, usage[key].sequence_state_bytes)
        yield from (executions, compute, round_trip, rss, device, states, state_bytes)

    def _refresh(self) -> None:
        import ray

        while not self._stopped.wait(REFRESH_S):
            with self._lock:
                hosts = list(self._hosts.items())
            for key, (counters, host) in hosts:
                try:
                    usage: Any = ray.get(host.usage.remote(), timeout=USAGE_TIMEOUT_S)
                except Exception as exc:  # a host restarting or gone: its gauges wait
                    logger.debug("no usage from instance %s: %s", counters.instance, exc)
                    continue
                with self._lock:
                    if key in self._hosts:
                        self._usage[key] = usage
