"""Analyzers left alone a while: one that answered 429 (or a 503 with Retry-After, or an
item of a `_bulk` answer that did) gets nothing new until its Retry-After has passed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from logdist.core.registry import Registry
from logdist.events import event

log = logging.getLogger("logdist.distributor")

# Seconds an analyzer that answered 429 without a usable Retry-After is left alone; the cap.
HOLD_DEFAULT = 1.0
HOLD_CAP = 60.0


class Holds:
    def __init__(self, registry: Registry, wake: Callable[[], None]) -> None:
        self.registry = registry
        self.wake = wake
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def hold(self, aid: str, seconds: float | None) -> None:
        """Give `aid` nothing new for `seconds` (its Retry-After), within HOLD_CAP."""
        delay = min(HOLD_CAP, HOLD_DEFAULT if seconds is None else seconds)
        old = self._timers.pop(aid, None)
        if old is not None:
            old.cancel()
        self.registry.hold(aid, True)
        event(log, "analyzer_held", analyzer=aid, seconds=round(delay, 3))

        def release() -> None:
            self._timers.pop(aid, None)
            self.registry.hold(aid, False)
            self.wake()

        self._timers[aid] = asyncio.get_running_loop().call_later(delay, release)

    def cancel(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
