"""What the engine and schedulers report as work flows through them.

Statistics, Prometheus metrics and tracing implement `Observer`; the engine calls every
registered observer and depends on none of them. Calls happen on the event loop and must
be cheap (counters, no I/O).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from inferd.core.types import Timestamps


class Observer(Protocol):
    def model_versions_changed(self, model_name: str, versions: Sequence[str]) -> None:
        """The versions of a model now serving (empty: none); called after every (un)load."""

    def request_finished(
        self,
        model_name: str,
        model_version: str,
        timestamps: Timestamps,
        success: bool,
        inferred_rows: int = 0,
        cancelled: bool = False,
    ) -> None:
        """One request left the engine, answered (`success`) or failed; `timestamps.sent` is set.

        `cancelled`: it failed because its client went away (as in Triton, a cancelled request
        counts as a failure, with the reason CANCELED).

        `inferred_rows`: rows the request adds to its model's inference count by itself, for a
        model without executions that would count them (an ensemble, as in Triton); else 0.
        """

    def batch_executed(
        self,
        model_name: str,
        model_version: str,
        batch_size: int,
        compute: Timestamps,
    ) -> None:
        """One execution ran on an instance; `batch_size` counts rows over all its requests.

        Only the four compute marks of `compute` are set; they are shared by every request
        of the batch.
        """
