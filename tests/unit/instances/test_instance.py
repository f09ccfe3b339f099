"""An instance thread's scheduling policy: its wake-ups do not preempt the event loop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from inferd.backends.base import BatchRequest, Device, DeviceKind
from inferd.core.types import Array
from inferd.instances.instance import ModelInstance
from tests.unit.scheduling.fakes import Doubler

linux_only = pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux's SCHED_BATCH")


class PolicyRecorder(Doubler):
    """A `Doubler` that notes the scheduling policy of the thread each batch runs on."""

    def __init__(self) -> None:
        super().__init__()
        self.policies: list[int] = []

    def execute(
        self,
        inputs: Mapping[str, Array],
        output_names: Sequence[str],
        requests: Sequence[BatchRequest] = (),
    ) -> dict[str, Array]:
        self.policies.append(os.sched_getscheduler(0))
        return super().execute(inputs, output_names, requests)


async def _one_batch(instance: ModelInstance) -> Array:
    inputs = {"x": np.ones((1, 4), dtype=np.float32)}
    # A bound on a hang only (a thread that died would never answer), not a timing check.
    result = await asyncio.wait_for(instance.execute(inputs, ["y"], []), 10)
    assert isinstance(result.outputs, dict)
    return result.outputs["y"]


@linux_only
def test_batches_run_on_a_thread_whose_wakeups_do_not_preempt() -> None:
    backend = PolicyRecorder()
    instance = ModelInstance("m_0", Device(DeviceKind.CPU), backend)
    try:
        for _ in range(2):
            np.testing.assert_array_equal(asyncio.run(_one_batch(instance)), 2)
    finally:
        instance.close()
    assert backend.policies == [os.SCHED_BATCH] * 2
    # The thread that made the instance keeps its own policy.
    assert os.sched_getscheduler(0) != os.SCHED_BATCH


@linux_only
def test_an_instance_serves_where_the_policy_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(pid: int, policy: int, param: os.sched_param) -> None:
        raise PermissionError("not allowed here")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    backend = PolicyRecorder()
    instance = ModelInstance("m_0", Device(DeviceKind.CPU), backend)
    try:
        np.testing.assert_array_equal(asyncio.run(_one_batch(instance)), 2)
    finally:
        instance.close()
    assert backend.policies == [os.sched_getscheduler(0)]
