"""Instance groups -> devices in the loader: GPUs per listed id, KIND_AUTO, and refusals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from inferd.backends.base import BatchRequest, Device, DeviceKind
from inferd.backends.registry import BackendRegistry
from inferd.core.errors import InvalidArgument, Unavailable
from inferd.core.model_config import parse_pbtxt
from inferd.core.types import Array
from inferd.engine.loader import LoadOptions, load_version


class _Instance:
    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest],
    ) -> dict[str, Array]:
        return dict(inputs)

    def close(self) -> None:
        pass


class _Model:
    def create_instance(self, device: Device, name: str) -> _Instance:
        return _Instance()

    def close(self) -> None:
        pass


class _Backend:
    """A backend that places instances wherever it is told; `gpus` says whether it has any."""

    name = "placed"
    platforms = ("placed",)
    default_model_filename = "model.bin"

    def __init__(self, gpus: bool) -> None:
        self.gpus = gpus

    def gpu_available(self) -> bool:
        return self.gpus

    def matches(self, version_path: Path) -> bool:
        return False

    def complete_config(self, config: Any, version_path: Path, default_max_batch_size: int) -> None:
        pass

    def load(self, config: Any, version_path: Path) -> _Model:
        return _Model()


def _load(groups: str, gpus: bool, tmp_path: Path) -> list[tuple[str, Device]]:
    config = parse_pbtxt(
        'name: "m" backend: "placed" '
        'input [{name: "x" data_type: TYPE_FP32 dims: [1]}] '
        'output [{name: "x" data_type: TYPE_FP32 dims: [1]}] ' + groups
    )
    registry = BackendRegistry({"placed": lambda: _Backend(gpus)})
    loaded = load_version(config, 1, tmp_path, registry, LoadOptions())
    try:
        return [(i.name, i.device) for i in loaded.instances]
    finally:
        loaded.close()


def test_count_instances_on_each_listed_gpu(tmp_path: Path) -> None:
    placed = _load(
        'instance_group [{name: "g" kind: KIND_GPU count: 2 gpus: [0, 1]}, {kind: KIND_CPU}]',
        gpus=True,
        tmp_path=tmp_path,
    )
    gpu0, gpu1 = Device(DeviceKind.GPU, 0), Device(DeviceKind.GPU, 1)
    assert placed == [
        ("g_0", gpu0), ("g_1", gpu0), ("g_2", gpu1), ("g_3", gpu1),
        ("m_1_0", Device(DeviceKind.CPU)),
    ]  # fmt: skip


def test_kind_auto_takes_the_gpu_when_there_is_one(tmp_path: Path) -> None:
    placed = _load("instance_group [{kind: KIND_AUTO}]", gpus=True, tmp_path=tmp_path)
    assert [device for _, device in placed] == [Device(DeviceKind.GPU, 0)]
    assert [device for _, device in _load("", gpus=True, tmp_path=tmp_path)] == [
        Device(DeviceKind.GPU, 0)
    ]


def test_kind_auto_falls_back_to_cpu(tmp_path: Path) -> None:
    placed = _load(
        "instance_group [{kind: KIND_AUTO count: 2 gpus: [1]}]", gpus=False, tmp_path=tmp_path
    )
    assert [device for _, device in placed] == [Device(DeviceKind.CPU)] * 2


def test_kind_gpu_without_gpu_is_a_clear_load_error(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="KIND_GPU, but backend 'placed' finds no usable GPU"):
        _load("instance_group [{kind: KIND_GPU}]", gpus=False, tmp_path=tmp_path)


def test_negative_gpu_index_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="negative GPU"):
        _load("instance_group [{kind: KIND_GPU gpus: [-1]}]", gpus=True, tmp_path=tmp_path)
