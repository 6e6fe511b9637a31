"""Live routed-log subscribers (`/ws/logs`, `logdist tail logs --follow`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from logdist.core.routed import LogFilter, RoutedLog, expand
from logdist.formats.packet import Packet

SUBSCRIBER_QUEUE = 1000


@dataclass(eq=False)
class Subscriber:
    filter: LogFilter
    queue: asyncio.Queue[dict[str, Any]] = field(
        default_factory=lambda: asyncio.Queue(SUBSCRIBER_QUEUE)
    )
    # Lines this watcher missed because it read too slowly; the packets themselves are unaffected.
    skipped: int = 0


class LogHub:
    def __init__(self, capacity: int) -> None:
        self.ring = RoutedLog(capacity)
        self._subscribers: set[Subscriber] = set()

    def routed(self, analyzer: str, packets: Sequence[Packet]) -> None:
        now = time.time()
        self.ring.record(now, analyzer, packets)
        for sub in self._subscribers:
            for packet in packets:
                for entry in expand(now, analyzer, packet, sub.filter):
                    if sub.queue.full():
                        sub.queue.get_nowait()
                        sub.skipped += 1
                    sub.queue.put_nowait(entry)

    def subscribe(self, flt: LogFilter) -> Subscriber:
        sub = Subscriber(flt)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)
