"""GPU utilisation, memory and power per device through NVML, under Triton's metric names.

Needs the `gpu-metrics` extra (`nvidia-ml-py`), imported only here; without it, without a
driver or without a GPU, `open_gpu_metrics` returns None and the server has no GPU metrics.
A reading a device does not support (power on some boards) is left out for that device.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

# (name, help, reading from the NVML module and a device handle)
READINGS: list[tuple[str, str, Callable[[Any, Any], float]]] = [
    (
        "nv_gpu_utilization",
        "GPU utilisation rate (0.0 - 1.0)",
        lambda nvml, h: nvml.nvmlDeviceGetUtilizationRates(h).gpu / 100,
    ),
    (
        "nv_gpu_memory_total_bytes",
        "GPU total memory, in bytes",
        lambda nvml, h: nvml.nvmlDeviceGetMemoryInfo(h).total,
    ),
    (
        "nv_gpu_memory_used_bytes",
        "GPU used memory, in bytes",
        lambda nvml, h: nvml.nvmlDeviceGetMemoryInfo(h).used,
    ),
    (
        "nv_gpu_power_usage",
        "GPU power usage, in watts",
        lambda nvml, h: nvml.nvmlDeviceGetPowerUsage(h) / 1000,
    ),
    (
        "nv_gpu_power_limit",
        "GPU power management limit, in watts",
        lambda nvml, h: nvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000,
    ),
    (
        "nv_energy_consumption",
        "GPU energy consumption since the driver loaded, in joules",
        lambda nvml, h: nvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1000,
    ),
]


class GpuMetrics(Collector):
    """One sample per device of each reading, labelled with the device's UUID."""

    def __init__(self, nvml: ModuleType, devices: list[tuple[str, Any]]) -> None:
        self._nvml = nvml
        self._devices = devices  # (uuid, handle)

    def collect(self) -> Iterator[Metric]:
        for name, documentation, read in READINGS:
            family = GaugeMetricFamily(name, documentation, labels=["gpu_uuid"])
            for uuid, handle in self._devices:
                try:
                    family.add_metric([uuid], read(self._nvml, handle))
                except self._nvml.NVMLError:
                    continue  # not supported by this device
            yield family


def open_gpu_metrics() -> GpuMetrics | None:
    """The GPU collector, or None where there is no NVML (no extra, no driver) or no GPU."""
    try:
        import pynvml
    except ImportError:
        logger.debug("no GPU metrics: nvidia-ml-py is not installed (extra inferd[gpu-metrics])")
        return None
    try:
        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        devices = [(_text(pynvml.nvmlDeviceGetUUID(h)), h) for h in handles]
    except pynvml.NVMLError as exc:
        logger.info("no GPU metrics: NVML is not available (%s)", exc)
        return None
    if not devices:
        return None
    logger.info("GPU metrics for %d device(s)", len(devices))
    return GpuMetrics(pynvml, devices)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
