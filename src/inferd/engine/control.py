"""Model control modes (Triton's `none`, `explicit`, `poll`) and the poll-mode loop."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable

from inferd.repository.poller import Fingerprint, repository_changes

logger = logging.getLogger(__name__)


class ControlMode(enum.Enum):
    NONE = "none"  # load everything at start; no changes afterwards
    EXPLICIT = "explicit"  # load what --load-model names, then only through the API
    POLL = "poll"  # load everything, then follow the repository folder while serving


class RepositoryPoller:
    """Every `interval` seconds, loads new models, reloads changed ones, unloads removed ones.

    `scan` (blocking) fingerprints every model from a listing of the repository; `known` is
    the scan the loaded models came from, so changes made while they loaded are picked up by
    the first poll.
    """

    def __init__(
        self,
        scan: Callable[[], dict[str, Fingerprint]],
        interval: float,
        known: dict[str, Fingerprint],
        load: Callable[[str], Awaitable[None]],
        unload: Callable[[str], Awaitable[None]],
    ) -> None:
        self._scan = scan
        self._interval = interval
        self._known = known
        self._load = load
        self._unload = unload

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.poll_once()
            except Exception:  # a bad poll must not end polling
                logger.exception("polling the model repository failed")

    async def poll_once(self) -> None:
        current = await asyncio.to_thread(self._scan)
        changes = repository_changes(self._known, current)
        self._known = current
        for name in changes.removed:
            logger.info("model '%s' was removed from the repository: unloading", name)
            await self._unload(name)
        for name in changes.added + changes.changed:
            logger.info("model '%s' was added or changed in the repository: loading", name)
            await self._load(name)
