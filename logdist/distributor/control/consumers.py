"""Cluster mode's fetching: the stream's messages to this replica, by lanes.

A JetStream consumer hands out its messages in the order they came. So that a burst's
backlog in the stream does not hold up everyone else's packets, the stream is fetched by
**lanes**, each a durable pull consumer that every replica shares: `routers` for the shared
subject `logdist.packets` (where every packet goes while the stream is calm, and where
earlier versions published), and `routers-0` … `routers-f` for the emitters' own subjects
(`logdist.packets.<lane>.<hash>`, used while the stream fills), an emitter's lane being the
first hex digit of its hash. Each lane is fetched by a loop of its own; what there is room
for is divided among the lanes that had messages at their last fetch (the others ask for
one). A burst fills its own lane; an emitter in another lane is fetched as its packets
arrive, and one in the same lane (one in sixteen) waits behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig

from logdist.distributor.control.publisher import LANES, SUBJECT
from logdist.events import event

log = logging.getLogger("logdist.cluster")

CONSUMER = "routers"
# Messages asked for in one fetch at most, and how long a fetch waits for some.
FETCH = 256
FETCH_WAIT = 0.5


@dataclass
class Lane:
    consumer: str
    subject: str
    psub: Any = None
    busy: bool = True  # had messages at its last fetch


def lanes() -> list[Lane]:
    """The shared subject's lane, then one for each first hex digit of the emitters' hashes."""
    return [Lane(CONSUMER, SUBJECT)] + [
        Lane(f"{CONSUMER}-{lane}", f"{SUBJECT}.{lane}.*") for lane in LANES
    ]


class Consumers:
    def __init__(
        self,
        stream: str,
        ack_wait: float,
        room: Callable[[], int],
        take: Callable[[Any, float], None],
    ) -> None:
        self.stream = stream
        self.ack_wait = ack_wait
        self._room = room  # messages this replica may fetch now
        self._take = take
        self.lanes = lanes()
        self._room_event = asyncio.Event()

    async def open(self, js: Any) -> None:
        """Make the lanes' consumers (each only if absent: the first replica's settings hold,
        as an earlier version's `routers` does) and bind to them."""
        for lane in self.lanes:
            config = ConsumerConfig(
                durable_name=lane.consumer,
                filter_subject=lane.subject,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.ack_wait,
                max_ack_pending=-1,
            )
            # Made already with other settings (another replica's --ack-wait): that holds.
            with contextlib.suppress(nats.js.errors.BadRequestError):
                await js.add_consumer(self.stream, config)
            lane.psub = await js.pull_subscribe_bind(durable=lane.consumer, stream=self.stream)

    def wake(self) -> None:
        """There may be room to fetch into again."""
        self._room_event.set()

    async def feed(self) -> None:
        await asyncio.gather(*(self._feed(lane) for lane in self.lanes))

    async def _feed(self, lane: Lane) -> None:
        while True:
            room = self._room()
            if room <= 0:
                self._room_event.clear()
                await self._room_event.wait()
                continue
            # A lane that had nothing asks for one message (what it holds then is known by
            # the next fetch), so that all the lanes' requests together stay near the room.
            busy = max(1, sum(other.busy for other in self.lanes))
            ask = min(FETCH, max(1, room // busy)) if lane.busy else 1
            try:
                msgs = await lane.psub.fetch(ask, timeout=FETCH_WAIT)
            except (nats.errors.TimeoutError, TimeoutError):  # nothing in the lane for now
                lane.busy = False
                continue
            except (nats.errors.Error, OSError) as exc:
                event(log, "cluster_fetch_failed", logging.WARNING, error=repr(exc))
                await asyncio.sleep(0.5)
                continue
            lane.busy = True
            now = time.monotonic()
            for msg in msgs:
                self._take(msg, now)

    async def info(self, js: Any) -> dict[str, int]:
        """The lanes' consumers' figures, summed."""
        pending = ack_pending = redelivered = 0
        for lane in self.lanes:
            consumer = await js.consumer_info(self.stream, lane.consumer)
            pending += consumer.num_pending
            ack_pending += consumer.num_ack_pending
            redelivered += consumer.num_redelivered
        return {
            "consumer_pending": pending,
            "consumer_ack_pending": ack_pending,
            "redelivered": redelivered,
        }
