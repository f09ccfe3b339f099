"""GPU metrics through NVML on a machine with a GPU (skipped elsewhere): one sample per device
of utilisation, memory and power under Triton's names, labelled with the device's UUID."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.server import running_server

pynvml = pytest.importorskip("pynvml")


def gpu_uuids() -> list[str]:
    try:
        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        return [str(pynvml.nvmlDeviceGetUUID(h)) for h in handles]
    except pynvml.NVMLError:
        return []


def test_each_gpu_reports_utilisation_memory_and_power(tmp_path: Path) -> None:
    uuids = gpu_uuids()
    if not uuids:
        pytest.skip("no GPU here")
    with (
        running_server(tmp_path) as server,
        urllib.request.urlopen(server.metrics_url, timeout=10) as response,
    ):
        text = response.read().decode()
    samples = {
        (sample.name, sample.labels.get("gpu_uuid", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    for uuid in uuids:
        total = samples[("nv_gpu_memory_total_bytes", uuid)]
        assert 0 < samples[("nv_gpu_memory_used_bytes", uuid)] <= total
        # Utilisation and power are left out where a device does not report them (MIG).
        assert 0 <= samples.get(("nv_gpu_utilization", uuid), 0) <= 1
        assert samples.get(("nv_gpu_power_usage", uuid), 1) > 0


def test_gpu_metrics_can_be_turned_off(tmp_path: Path) -> None:
    if not gpu_uuids():
        pytest.skip("no GPU here")
    with (
        running_server(tmp_path, "--no-allow-gpu-metrics") as server,
        urllib.request.urlopen(server.metrics_url, timeout=10) as response,
    ):
        assert "nv_gpu_" not in response.read().decode()
