"""The `Request`s of an iterative sequence model's steps, kept from one step to the next.

A request handed back (`reschedule()`) runs again in the next step; as in Triton, where a
rescheduled request is the same object in its next `execute`, it finds the `Request` (and the
response sender) of its step before, reset for this step, instead of new ones. Only the last
step's are kept, by the engine's request they stand for: a request that left the running
batch is forgotten at the next step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from inferd.backends.base import BatchRequest
from inferd.backends.python.api import Request
from inferd.core.types import Array


class StepRequests:
    """Makes the `Request`s of a batch, reusing those of the batch before for the same
    engine requests."""

    __slots__ = ("_kept",)

    def __init__(self) -> None:
        # By id of the engine's request (`BatchRequest.origin`), which the kept `Request`
        # holds alive through its own `origin`: so an id names one request while it is kept.
        self._kept: dict[int, Request] = {}

    def described(
        self,
        requests: Sequence[BatchRequest],
        views: Sequence[dict[str, Array]],
        parameters: Sequence[dict[str, Any]],
    ) -> list[Request]:
        """The batch's `Request`s: its rows' `views` of the inputs and its own `parameters`."""
        kept = self._kept
        self._kept = step = {}
        described = []
        for request, view, own in zip(requests, views, parameters, strict=True):
            key = id(request.origin)
            reused = kept.pop(key, None) if request.origin is not None else None
            if reused is None:
                reused = Request(view, request.start, request.end, request.id, own, origin=request)
            else:  # every field but the sender, which stays with its request's sink
                reused.inputs = view
                reused.start = request.start
                reused.end = request.end
                reused.id = request.id
                reused.parameters = own
                reused.rescheduled = False
                reused.origin = request
            if request.origin is not None:
                step[key] = reused
            described.append(reused)
        return described
