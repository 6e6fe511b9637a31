"""A fleet: N emitters in one process (`logdist emitter start --fleet N`).

Each member is an `Emitter` with its own id (`PREFIX-0` … `PREFIX-N-1`), rate, buffer, pause
state and counters, registered with the distributor as N separate emitters would be (its own
id, its own control URL `BASE/e/ID`, its own lease). What they share is the machinery, so that
tens of thousands fit in a few processes: one timer heap generates every member's packets on
its schedule, a pool of senders posts them over kept-alive connections (logdist.net.pool),
and one registrar keeps every lease.

By default each packet is its own `POST /log-packet`, exactly as N separate emitters would
send it. With `fleet_batch` N > 1, the packets ready at the same moment (members due within
one QUANTUM of each other) travel together, up to N in one NDJSON `POST /log-packets`, each
still with its own packetId and emitter id: what a host's log shipper does for the
applications behind it. The distributor takes such a request whole or refuses it whole; a
refused batch (a 4xx) is sent again one packet per request, so only a bad packet is rejected.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import heapq
import logging
import random
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import aiohttp

from logdist.config import EmitterConfig
from logdist.core.backoff import Backoff
from logdist.core.failover import Failover
from logdist.core.latency import LatencyHistogram
from logdist.emitter.app import (
    JSON_FIELDS,
    REJECTING,
    Emitter,
    needs_renewal,
    registration,
    renew_from,
)
from logdist.emitter.generator import Outgoing
from logdist.errors import UnknownEmitter
from logdist.events import event
from logdist.net.pool import Forwarder, ForwardError, framing, target
from logdist.net.server import BoundAddress
from logdist.net.web import NDJSON

log = logging.getLogger("logdist.emitter")

# Requests in flight to the distributor for the whole fleet (its kept-alive connections).
SENDERS = 64
# Registrations in flight (the first ones, and renewals).
REGISTRARS = 16
NDJSON_FIELDS = framing(NDJSON)
# Seconds of generation done per timer: members due this soon are not waited for.
QUANTUM = 0.005


@dataclass(slots=True, eq=False)
class Member:
    emitter: Emitter
    url: str = ""
    scheduled: bool = False  # in the generation heap
    queued: bool = False  # waiting for a sender
    hold_until: float = 0.0  # backing off after a failed send
    renew_at: float = 0.0
    renew_every: float | None = None
    sent_mark: int = -1


class Fleet:
    def __init__(self, cfg: EmitterConfig, tls: ssl.SSLContext | None = None) -> None:
        self.cfg = cfg
        self.tls = tls
        shared = random.Random()
        # A member keeps no delivered ids unless asked (--track-ids): 20,000 members keeping
        # 1,000 each would hold 2 GB.
        track = cfg.track_ids or 0
        self.members: dict[str, Member] = {}
        for i in range(cfg.fleet):
            mcfg = dataclasses.replace(cfg, id=f"{cfg.id}-{i}", fleet=0, track_ids=track)
            member = self.members[mcfg.id] = Member(Emitter(mcfg, rand=shared))
            member.emitter.on_change = functools.partial(self.changed, member)
        self._due: list[tuple[float, int, Member]] = []
        self._seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._ready: deque[Member] = deque()
        self._sending = 0
        self._running: set[asyncio.Task[None]] = set()
        self._report: deque[Member] = deque()
        self._wake_registrar = asyncio.Event()
        self._backoff = Backoff(base=0.05, cap=5.0)
        self._poster = Forwarder(tls)
        auth = (("Authorization", f"Bearer {cfg.token}"),) if cfg.token else ()
        bases = [url.rstrip("/") for url in cfg.distributor]
        self._targets = [target(base + "/log-packet", auth) for base in bases]
        self._batch_targets = [target(base + "/log-packets", auth) for base in bases]
        self.failover = Failover(bases, now=time.monotonic, rand=random.random)
        self._batch = max(1, cfg.fleet_batch)
        # From a packet's generation to the distributor's 2xx, for every delivered packet.
        self.latency = LatencyHistogram()
        self.requests = 0
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def member(self, eid: str) -> Member:
        try:
            return self.members[eid]
        except KeyError:
            raise UnknownEmitter(
                f"no emitter {eid!r} in this fleet ({self.cfg.id}-0 … {self.cfg.id}-"
                f"{self.cfg.fleet - 1})"
            ) from None

    # -- control ---------------------------------------------------------------------------

    def changed(self, m: Member) -> None:
        """A member was paused, resumed or re-rated: schedule it and report it."""
        self._schedule(m, time.monotonic())
        self._queue(m)
        self._report.append(m)
        self._wake_registrar.set()

    # -- generation ------------------------------------------------------------------------

    def _schedule(self, m: Member, when: float) -> None:
        e = m.emitter
        if m.scheduled or e.paused or e.bucket.rate <= 0 or self._stopping:
            return
        self._push(m, when)
        if self._timer is None or when < self._timer_at:
            self._arm(when)

    def _push(self, m: Member, when: float) -> None:
        m.scheduled = True
        self._seq += 1
        heapq.heappush(self._due, (when, self._seq, m))

    def _arm(self, when: float) -> None:
        """One timer for the whole fleet, at its earliest due member (no task, no event)."""
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = when
        self._timer = loop.call_at(loop.time() + max(0.0, when - time.monotonic()), self._fire)

    def _fire(self) -> None:
        """Generate a packet for every member that is due, and re-arm for the next."""
        self._timer = None
        due = self._due
        now = time.monotonic()
        # Members due within the next QUANTUM go now: one timer a few ms, not one a packet.
        while due and due[0][0] <= now + QUANTUM:
            when, _, m = heapq.heappop(due)
            m.scheduled = False
            e = m.emitter
            rate = e.bucket.rate
            if e.paused or rate <= 0 or self._stopping:
                continue
            if len(e.buffer) < e.cfg.buffer:
                packet = e.factory.make()
                packet.born = now
                e.buffer.append(packet)
                e.generated += 1
                self._ready_up(m)
            else:
                e.stalls += 1  # full: it generates nothing until the buffer drains
            # On schedule; a member that fell behind by more than a second starts afresh.
            self._push(m, max(when + 1.0 / rate, now - 1.0))
        self._pump()  # what came due together leaves together (in one request when batched)
        if due and not self._stopping:
            self._arm(due[0][0])

    # -- sending ---------------------------------------------------------------------------

    def _queue(self, m: Member) -> None:
        if self._ready_up(m):
            self._pump()

    def _ready_up(self, m: Member) -> bool:
        """Put `m` in line for a sender if it has a packet to send and room to send it."""
        e = m.emitter
        if m.queued or not e.buffer or e.paused or e.in_flight >= e.cfg.concurrency:
            return False
        m.queued = True
        self._ready.append(m)
        return True

    def _pump(self) -> None:
        """Start sends while there are members with packets and room in flight: one packet
        per request, or up to `fleet_batch` members' packets together."""
        ready = self._ready
        now = asyncio.get_running_loop().time()
        while ready and self._sending < SENDERS:
            batch: list[tuple[Member, Outgoing]] = []
            while ready and len(batch) < self._batch:
                m = ready.popleft()
                m.queued = False
                e = m.emitter
                if e.paused or not e.buffer or m.hold_until > now:
                    continue
                batch.append((m, e.buffer.popleft()))
                e.in_flight += 1
                self._ready_up(m)  # more buffered, and room for another request of its own
            if batch:
                self._start(batch)

    def _start(self, batch: list[tuple[Member, Outgoing]], alone: bool = False) -> None:
        """Post `batch` (its packets already counted in flight) as one request."""
        self._sending += 1
        task = asyncio.get_running_loop().create_task(self._send(batch, alone))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def _release(self, m: Member) -> None:
        m.hold_until = 0.0
        self._queue(m)

    async def _send(self, batch: list[tuple[Member, Outgoing]], alone: bool = False) -> None:
        timeout = self.cfg.timeout
        self.requests += 1
        to = self.failover.pick()
        try:
            if self._batch > 1 and not alone:
                body = b"\n".join(packet.body for _, packet in batch)
                answer = await self._poster.post(
                    self._batch_targets[to], body, NDJSON_FIELDS, timeout
                )
            else:
                answer = await self._poster.post(
                    self._targets[to], batch[0][1].body, JSON_FIELDS, timeout
                )
        except ForwardError as exc:
            status, retry_after, reason = 0, None, str(exc)
        else:
            status, retry_after = answer.status, answer.retry_after
            reason = answer.body[:200].decode(errors="replace")
        finally:
            for m, _ in batch:
                m.emitter.in_flight -= 1
            self._sending -= 1
        if 200 <= status < 300:
            self.failover.succeeded(to)
            self._delivered(batch)
        elif status in REJECTING and len(batch) > 1:
            # Taken whole or refused whole: find the bad packet by sending each alone.
            event(log, "batch_refused", logging.WARNING, packets=len(batch), status=status)
            for m, packet in batch:
                m.emitter.in_flight += 1
                self._start([(m, packet)], alone=True)
        elif status in REJECTING:
            m, packet = batch[0]
            m.emitter.record_rejection(packet, status, reason)
        else:
            self._failed(batch, status, retry_after, reason, self.failover.failed(to, retry_after))
        for m, _ in batch:
            self._ready_up(m)
        self._pump()

    def _delivered(self, batch: list[tuple[Member, Outgoing]]) -> None:
        now = time.monotonic()
        for m, packet in batch:
            if m.emitter.record_delivery(packet):
                self._report.append(m)  # the distributor may have restarted
                self._wake_registrar.set()
            self.latency.observe(now - packet.born)

    def _failed(
        self,
        batch: list[tuple[Member, Outgoing]],
        status: int,
        retry_after: float | None,
        reason: str,
        wait: float,
    ) -> None:
        """Not taken: every packet goes back to the front of its member's buffer, in order,
        and the member backs off — unless another distributor is up (`wait` is 0): then it
        is sent there at once."""
        loop = asyncio.get_running_loop()
        for m, packet in reversed(batch):
            m.emitter.buffer.appendleft(packet)
        for m in dict.fromkeys(m for m, _ in batch):
            e = m.emitter
            e.retries += 1
            e.failures += 1
            e.last_error = f"HTTP {status}: {reason}" if status else reason
            if not status:
                e.lost_contact = True
            delay = self._backoff.delay(e.failures, random.random, retry_after) if wait else 0.0
            m.hold_until = loop.time() + delay
            loop.call_later(delay, self._release, m)

    # -- registration ----------------------------------------------------------------------

    async def _register_one(self, m: Member) -> None:
        assert self._session is not None
        e = m.emitter
        ok, raw = False, b""
        for i in self.failover.order():
            try:
                async with self._session.post(
                    self.failover.urls[i] + "/emitters/register",
                    json=registration(e.cfg, m.url, e.metrics()),
                    timeout=aiohttp.ClientTimeout(total=e.cfg.timeout),
                ) as resp:
                    raw = await resp.read()
                    ok = resp.status == 200
            except (TimeoutError, aiohttp.ClientError):
                ok, raw = False, b""
            if ok:
                break
        now = time.monotonic()
        if ok:
            m.renew_every = renew_from(raw) or m.renew_every
            every = m.renew_every or e.cfg.register_interval
            m.renew_at = now + every * random.uniform(0.8, 1.2)
        else:
            m.renew_at = now + min(1.0, e.cfg.register_interval)
        e.registered = ok
        m.sent_mark = e.sent_packets

    async def _registrar(self, bound: BoundAddress) -> None:
        """Register every member, then keep every lease: a member is renewed when its time
        comes unless its packets were accepted meanwhile, and at once when its state
        changes. The first round goes as fast as REGISTRARS requests at a time allow."""
        base = (await bound.wait()).rstrip("/")
        for m in self.members.values():
            m.url = f"{base}/e/{m.emitter.cfg.id}"
        slots = asyncio.Semaphore(REGISTRARS)
        pending: set[asyncio.Task[None]] = set()

        async def one(m: Member) -> None:
            try:
                await self._register_one(m)
            finally:
                slots.release()

        async def spawn(m: Member) -> None:
            await slots.acquire()  # at most REGISTRARS at a time
            task = asyncio.get_running_loop().create_task(one(m))
            pending.add(task)
            task.add_done_callback(pending.discard)

        for m in self.members.values():
            await spawn(m)
        while pending:
            await asyncio.sleep(0.05)
        event(
            log,
            "fleet_registered",
            fleet=self.cfg.id,
            members=len(self.members),
            registered=sum(m.emitter.registered for m in self.members.values()),
        )
        while True:
            while self._report:
                await spawn(self._report.popleft())
            now = time.monotonic()
            for m in self.members.values():
                if m.renew_at <= now:
                    e = m.emitter
                    if needs_renewal(e.registered, False, e.sent_packets, m.sent_mark):
                        m.renew_at = now + 3600  # until this renewal answers
                        await spawn(m)
                    else:  # its packets renewed the lease
                        m.sent_mark = e.sent_packets
                        every = m.renew_every or e.cfg.register_interval
                        m.renew_at = now + every * random.uniform(0.8, 1.2)
            self._wake_registrar.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._wake_registrar.wait()

    # -- life ------------------------------------------------------------------------------

    async def start(self, bound: BoundAddress) -> None:
        headers = {"Authorization": f"Bearer {self.cfg.token}"} if self.cfg.token else None
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=REGISTRARS, ssl=self.tls or True),
            skip_auto_headers=("User-Agent",),
            headers=headers,
        )
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        # Spread the first packets over a second, as N emitters started together would be.
        for m in self.members.values():
            self._schedule(m, now + random.random() / max(m.emitter.bucket.rate, 1.0))
        self._tasks.append(loop.create_task(self._registrar(bound)))
        event(log, "fleet_started", fleet=self.cfg.id, members=len(self.members))

    @property
    def buffered(self) -> int:
        return sum(m.emitter.buffered for m in self.members.values())

    async def stop(self) -> None:
        self._stopping = True
        deadline = time.monotonic() + self.cfg.drain_timeout
        while time.monotonic() < deadline and any(
            m.emitter.buffered and not m.emitter.paused for m in self.members.values()
        ):
            await asyncio.sleep(0.05)
        if self._timer is not None:
            self._timer.cancel()
        for task in [*self._tasks, *self._running]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._running, return_exceptions=True)
        self._poster.close()
        if self._session is not None:
            await self._session.close()
        unsent = self.buffered
        event(
            log,
            "summary",
            logging.WARNING if unsent else logging.INFO,
            fleet=self.cfg.id,
            members=len(self.members),
            generated=sum(m.emitter.generated for m in self.members.values()),
            sent=sum(m.emitter.sent_packets for m in self.members.values()),
            unsent=unsent,
        )

    def metrics(self) -> dict[str, Any]:
        """The fleet as a whole."""
        emitters = [m.emitter for m in self.members.values()]
        return {
            "fleet": self.cfg.id,
            "members": len(emitters),
            "registered": sum(e.registered for e in emitters),
            "paused": sum(e.paused for e in emitters),
            "rps": sum(e.bucket.rate for e in emitters if not e.paused),
            "buffered": sum(e.buffered for e in emitters),
            "generated_packets": sum(e.generated for e in emitters),
            "sent_packets": sum(e.sent_packets for e in emitters),
            "sent_messages": sum(e.sent_messages for e in emitters),
            "retries": sum(e.retries for e in emitters),
            "rejected": sum(e.rejected for e in emitters),
            "stalls": sum(e.stalls for e in emitters),
            "batch": self._batch,
            "requests": self.requests,
            # Generation to 2xx of each delivered packet, by upper bound in ms (not cumulative).
            "latency_ms": self.latency.to_json(),
        }
