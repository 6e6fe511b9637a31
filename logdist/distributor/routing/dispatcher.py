"""From the queue to the analyzers: late binding, per-analyzer outboxes, batching, retries.

A packet waits in one bounded queue until some analyzer has room; only then is it assigned
(late binding), so nothing queued waits on a dead analyzer. The queue is a lane per emitter
served by deficit round robin (`core.lanes`), so a burst does not delay a quiet emitter.
Each analyzer has an outbox of packets assigned to it and up to `max_requests` sender tasks
draining it, so a slow analyzer holds only its own outbox, and once that is full the picker
passes it over. An outbox holds at most what its senders take in one go (a batch each, or a
packet each for an analyzer that takes one at a time): the rest waits in the fair queue.
A packet leaves the distributor only when an analyzer answers 2xx, or as a dead letter.

How a batch is encoded and sent is the outputs' (`outputs/wire.py`); what its answer does
to the packets, `verdicts.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any

from logdist.config import DistributorConfig
from logdist.core.backoff import Backoff
from logdist.core.lanes import FairQueue
from logdist.core.registry import Analyzer, Health, HealthChange, Registry
from logdist.distributor.observe.counters import Counters
from logdist.distributor.outputs.wire import Wire
from logdist.distributor.routing.holds import Holds
from logdist.distributor.routing.limits import Limits
from logdist.distributor.routing.outbox import Outbox
from logdist.distributor.routing.shares import Shares
from logdist.distributor.routing.verdicts import Verdicts
from logdist.errors import Backpressure, PayloadTooLarge
from logdist.events import event
from logdist.formats.packet import Packet, total

log = logging.getLogger("logdist.distributor")

# Tries a packet gets at once; after that each retry waits out a backoff.
FREE_RETRIES = 3
# Packets routed per turn before the dispatcher lets other tasks run.
ROUTE_SLICE = 4096


class Dispatcher(Verdicts):
    def __init__(
        self,
        cfg: DistributorConfig,
        registry: Registry,
        counters: Counters,
        now: Callable[[], float] = time.monotonic,
        on_delivered: Callable[[str, list[Packet], float], None] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.cfg = cfg
        self.registry = registry
        self.counters = counters
        # Told of every acknowledged batch: analyzer id, packets, seconds the request took.
        self.on_delivered = on_delivered
        # Keeps a packet refused too often as a dead letter; False if it could not (it is
        # then kept in the queue and tried again later).
        self.on_dead_letter: Callable[[Packet], bool] | None = None
        # Told when a packet is split into parts by an answer record by record: the parts
        # stand for it from then on (the spool and the cluster stream wait for all of them).
        self.on_split: Callable[[Packet, list[Packet]], None] | None = None
        # Packets waiting for an analyzer, leaving by deficit round robin across emitters
        # (one FIFO when fairness is off).
        self.queue = FairQueue(fair=cfg.fair_share_above > 0)
        # Packets in `queue` (a run counts what it holds).
        self.queued = 0
        # Accepted and not yet acknowledged by an analyzer: the packets this daemon owns.
        self.unacked = 0
        self.backing_off = 0
        self._now = now
        self._boxes: dict[str, Outbox] = {}
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()
        self._settled.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self.wire = Wire(tls)
        # Per-emitter rate limits; what each emitter holds of `unacked`, and fair admission
        # over it (the limits checked with it).
        self.limits = Limits(cfg.limits, cfg.state_dir, now)
        self.shares = Shares(
            self.holds_at_most, cfg.fair_share_above, cfg.retry_after, now, self.limits
        )
        self._backoff = Backoff(base=0.1, cap=2.0)
        # Analyzers left alone after a 429 (or a 503 with Retry-After), until the timer.
        self.holds = Holds(registry, self._wake.set)
        # Told when the queue has room again (the front door's waiting requests, syslog's
        # paused connections), in this order.
        self.on_room: list[Callable[[], None]] = []
        # The full analyzer whose turn it was: routing waits for its room (see Registry).
        self._waiting_for: Analyzer | None = None

    # -- intake ---------------------------------------------------------------------------

    def check_room(self, count: int) -> None:
        """Refuse `count` more packets with backpressure when the queue cannot hold them."""
        capacity = self.cfg.queue_capacity
        if count > capacity:
            raise PayloadTooLarge(
                f"a batch of {count} packets exceeds the queue capacity of {capacity}",
                {"capacity": capacity},
            )
        if self.queued + count > capacity:
            raise self.queue_full()

    def holds_at_most(self) -> int:
        """What the distributor can hold now: its queue, and what the analyzers' pending
        windows hold (room in a window that routing cannot use, an analyzer's that is
        down or slow to take more, is no room)."""
        return self.cfg.queue_capacity + self.unacked - self.queued

    def queue_full(self) -> Backpressure:
        capacity = self.cfg.queue_capacity
        return Backpressure(
            f"queue full ({self.queued} of {capacity} packets); keep the packets and retry",
            retry_after=self.cfg.retry_after,
            detail={"depth": self.queued, "capacity": capacity},
        )

    def enqueue(self, packets: list[Packet], *, replayed: bool = False) -> None:
        """Take ownership of `packets` (room was checked, or they are replayed from the spool)."""
        count = total(packets)
        self.queue.extend(packets)
        self.queued += count
        self.unacked += count
        self.shares.took(packets)
        self._settled.clear()
        if not replayed:
            self.counters.received_packets += count
            self.counters.received_messages += (
                packets[0].messages if count == 1 else sum([p.messages for p in packets])
            )
        self._wake.set()

    def wake(self) -> None:
        """Something changed that may let queued packets move (room, health, admin state)."""
        self._wake.set()

    # -- routing --------------------------------------------------------------------------

    def start(self) -> None:
        self._spawn(self._run())

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._route()
            await asyncio.sleep(0)

    def _route(self) -> None:
        self._route_slice()
        if self.on_room and self.queued < self.cfg.queue_capacity:
            for room in self.on_room:
                room()

    def _route_slice(self) -> None:
        queue, registry = self.queue, self.registry
        waiting = self._waiting_for
        if waiting is not None:
            if self._busy(waiting) and waiting.routable and not registry.check_stall(waiting):
                return
            self._waiting_for = None
        for _ in range(ROUTE_SLICE):
            if not queue:
                return
            packet = queue.peek()
            exclude = packet.last_failed if packet.refusals is None else packet.refusers()
            analyzer = registry.assign(packet.messages, exclude, packet.count)
            if analyzer is None and exclude is not None:
                # Only an analyzer that failed it has room: better it again than nowhere.
                analyzer = registry.assign(packet.messages, None, packet.count)
            if analyzer is None:
                return
            queue.popleft()
            self.queued -= packet.count
            box = self._boxes.get(analyzer.id)
            if box is None or box.analyzer is not analyzer:
                box = self._boxes[analyzer.id] = Outbox(analyzer)
            box.packets.append(packet)
            self._add_sender(box)
            if registry.full(analyzer):
                # Its share is taken whole: wait for its room (or for it to be found stalled).
                self._waiting_for = analyzer
                loop = asyncio.get_running_loop()
                loop.call_later(registry.stall_after, self._wake.set)
                return
            if box.deep(self.cfg.max_requests, self.cfg.forward_batch):
                # Its senders have all they can take: wait until one takes it (a forward
                # that ends wakes routing), so that packets wait in the fair queue.
                self._waiting_for = analyzer
                return
        self._wake.set()

    def _busy(self, analyzer: Analyzer) -> bool:
        """It may not be given more now: full, or its outbox holds all its senders take."""
        if self.registry.full(analyzer):
            return True
        box = self._boxes.get(analyzer.id)
        return box is not None and box.deep(self.cfg.max_requests, self.cfg.forward_batch)

    def _add_sender(self, box: Outbox) -> None:
        """Start a sender for `box` unless one is about to take from it or it has enough."""
        if not box.idle and box.senders < self.cfg.max_requests:
            box.senders += 1
            box.idle += 1
            self._spawn(self._send(box))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, box: Outbox) -> None:
        busy = False
        try:
            while box.packets:
                box.idle -= 1
                busy = True
                await self._forward(box, self._next_request(box))
                box.idle += 1
                busy = False
        finally:
            box.senders -= 1
            if not busy:
                box.idle -= 1

    def _next_request(self, box: Outbox) -> list[Packet]:
        batch = box.next_request(self.cfg.forward_batch)
        if box.packets:  # more than a batch waits: another sender forwards it alongside
            self._add_sender(box)
        return batch

    async def _forward(self, box: Outbox, batch: list[Packet]) -> None:
        analyzer = box.analyzer
        try:
            await self._attempt(box, batch)
        finally:
            self.registry.release(analyzer.id, total(batch))
            self._wake.set()

    def _retry(self, batch: list[Packet]) -> None:
        attempts = max(p.attempts for p in batch)
        if attempts <= FREE_RETRIES:
            self._requeue(batch)
            return
        # A packet that keeps failing everywhere waits before its next try instead of spinning.
        delay = self._backoff.delay(attempts - FREE_RETRIES, random.random)
        count = total(batch)
        self.backing_off += count

        def later() -> None:
            self.backing_off -= count
            self._requeue(batch)

        self._later(delay, later)

    def _requeue(self, packets: list[Packet]) -> None:
        self.queue.push_front(packets)
        self.queued += total(packets)
        self._wake.set()

    # -- changes from health checks and admin ---------------------------------------------

    def health_changed(self, change: HealthChange) -> None:
        level = logging.WARNING if change.new is Health.DOWN else logging.INFO
        event(
            log,
            "health",
            level,
            analyzer=change.analyzer,
            old=change.old.value,
            new=change.new.value,
            reason=change.reason,
        )
        if change.new is not Health.UP:
            self.evacuate(change.analyzer)
        delay = self.registry.retry_delay(change.analyzer)
        if delay is not None:
            # Passive health: nothing probes it, so it is tried again after a back-off.
            self._later(delay, functools.partial(self._try_again, change.analyzer))
        self._wake.set()

    def _try_again(self, aid: str) -> None:
        change = self.registry.try_again(aid)
        if change is not None:
            self.health_changed(change)

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        def run() -> None:
            self._timers.discard(handle)
            callback()

        handle = asyncio.get_running_loop().call_later(delay, run)
        self._timers.add(handle)

    def evacuate(self, aid: str) -> None:
        """Hand back what waits in `aid`'s outbox; requests already sent finish on their own."""
        box = self._boxes.get(aid)
        if box is None or not box.packets:
            return
        packets = list(box.packets)
        box.packets.clear()
        self.registry.release(aid, total(packets), settled=False)
        self._requeue(packets)

    def forget(self, aid: str) -> None:
        self.evacuate(aid)
        self._boxes.pop(aid, None)
        self.wire.forget(aid)

    def outbox_depth(self, aid: str) -> int:
        box = self._boxes.get(aid)
        return total(list(box.packets)) if box is not None else 0

    # -- shutdown -------------------------------------------------------------------------

    async def drain(self, timeout: float) -> int:
        """Wait up to `timeout` s for every owned packet to be acknowledged; return those left."""
        if self.unacked:
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._settled.wait()
        return self.unacked

    async def stop(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        self.holds.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.wire.close()
