"""`logdist emitter start`: generate packets, deliver them, and take control over HTTP.

A packet leaves the outgoing buffer only when the distributor answered 2xx. Refusals that
may pass (503 with Retry-After, 5xx, 429, connection errors, timeouts) keep the packet and
retry with backoff; a 4xx that says the packet itself is bad is counted and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import ssl
import time
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import Any

import aiohttp
import orjson

from logdist.config import EmitterConfig
from logdist.core.failover import Failover
from logdist.core.ratelimit import TokenBucket
from logdist.emitter.generator import Outgoing, PacketFactory
from logdist.errors import InvalidRequest
from logdist.events import event
from logdist.net.pool import Forwarder, ForwardError, framing, target
from logdist.net.server import BoundAddress
from logdist.net.web import (
    JSON,
)

log = logging.getLogger("logdist.emitter")

MAX_RATE = 1_000_000.0
# Delivered ids one emitter keeps unless told (--track-ids); a fleet's members keep none.
TRACK_IDS = 100_000
# Statuses that say the packet itself will never be accepted.
REJECTING = frozenset({400, 413, 415, 422})
JSON_FIELDS = framing(JSON)


class Outcome(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REJECTED = "rejected"


def check_rate(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"rps must be a number, got {type(value).__name__}")
    rate = float(value)
    if not math.isfinite(rate) or not 0 <= rate <= MAX_RATE:
        raise InvalidRequest(f"rps must be between 0 and {MAX_RATE:g}, got {value!r}")
    return rate


class Emitter:
    def __init__(
        self,
        cfg: EmitterConfig,
        now: Callable[[], float] = time.monotonic,
        rand: random.Random | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.cfg = cfg
        self.tls = tls  # what https:// distributors are verified with (net.tls)
        self.paused = False
        self.bucket = TokenBucket(cfg.rate, now=now)
        self.factory = PacketFactory(cfg.id, cfg.messages, cfg.service, rand=rand)
        self.buffer: deque[Outgoing] = deque()
        self.in_flight = 0
        track = TRACK_IDS if cfg.track_ids is None else cfg.track_ids
        self.sent_ids: deque[str] = deque(maxlen=track)
        self.generated = 0
        self.sent_packets = 0
        self.sent_messages = 0
        self.retries = 0
        self.rejected = 0
        self.stalls = 0
        self.registered = False
        self.last_error: str | None = None
        self.failures = 0
        self._stopping = False
        rng = rand or random.Random()
        self.targets = Failover(cfg.distributor, now=now, rand=rng.random)
        self._changed = asyncio.Event()
        # Set when pause, resume or rate changes what the distributor should see.
        self._report = asyncio.Event()
        # A send failed to reach the distributor; the next one that does re-registers.
        self.lost_contact = False
        # Called after pause, resume and rate (a fleet schedules and reports the member).
        self.on_change: Callable[[], None] | None = None
        self._work = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Packets go out on the lean kept-alive client, as a fleet's do: one way to send, one
        # reading of every answer (Retry-After included).
        self._poster = Forwarder(tls)
        auth = (("Authorization", f"Bearer {cfg.token}"),) if cfg.token else ()
        self._targets = [target(url.rstrip("/") + "/log-packet", auth) for url in cfg.distributor]

    @property
    def buffered(self) -> int:
        """Packets generated and not yet acknowledged (waiting or in flight)."""
        return len(self.buffer) + self.in_flight

    # -- control ---------------------------------------------------------------------------

    def pause(self) -> None:
        self.paused = True
        self._state_changed()
        event(log, "paused", emitter=self.cfg.id)

    def resume(self) -> None:
        self.paused = False
        self._state_changed()
        self._work.set()
        event(log, "resumed", emitter=self.cfg.id)

    def set_rate(self, rps: object) -> None:
        self.bucket.set_rate(check_rate(rps))
        self._state_changed()
        event(log, "rate", emitter=self.cfg.id, rps=self.bucket.rate)

    def _state_changed(self) -> None:
        """Paused, resumed or re-rated: generation looks again, and the distributor is told."""
        self._changed.set()
        self._report.set()
        if self.on_change is not None:
            self.on_change()

    def metrics(self) -> dict[str, Any]:
        return {
            "emitter_id": self.cfg.id,
            "id": self.cfg.id,
            "rps": self.bucket.rate,
            "paused": self.paused,
            "buffer_len": len(self.buffer),
            "buffer_capacity": self.cfg.buffer,
            "in_flight": self.in_flight,
            "generated_packets": self.generated,
            "sent_packets": self.sent_packets,
            "sent_messages": self.sent_messages,
            "retries": self.retries,
            "rejected": self.rejected,
            "stalls": self.stalls,
            "registered": self.registered,
            "last_error": self.last_error,
        }

    # -- running ---------------------------------------------------------------------------

    async def start(self, bound: BoundAddress) -> None:
        headers = {"Authorization": f"Bearer {self.cfg.token}"} if self.cfg.token else None
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ssl=self.tls or True),
            skip_auto_headers=("User-Agent",),
            headers=headers,
        )
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._generate()))
        self._tasks.extend(loop.create_task(self._send()) for _ in range(self.cfg.concurrency))
        self._tasks.append(loop.create_task(self._register(bound)))

    async def stop(self) -> None:
        self._stopping = True
        generator, *rest = self._tasks
        generator.cancel()
        if not self.paused and self.buffered:
            deadline = time.monotonic() + self.cfg.drain_timeout
            while self.buffered and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        for task in rest:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        self._poster.close()
        level = logging.WARNING if self.buffered else logging.INFO
        event(
            log,
            "summary",
            level,
            emitter=self.cfg.id,
            generated=self.generated,
            sent=self.sent_packets,
            rejected=self.rejected,
            unsent=self.buffered,
        )

    async def _wait(self, ev: asyncio.Event, timeout: float | None = None) -> None:
        ev.clear()
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
        # arrives as the event is set, and the generator would outlive stop().
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await ev.wait()

    async def _generate(self) -> None:
        cfg = self.cfg
        while not self._stopping:
            room = cfg.buffer - self.buffered
            if self.paused or self.bucket.rate == 0 or room <= 0:
                if room <= 0 and not self.paused:
                    self.stalls += 1
                await self._wait(self._changed)
                continue
            n = self.bucket.take_up_to(room)
            if n == 0:
                await self._wait(self._changed, min(self.bucket.delay(1), 1.0))
                continue
            for _ in range(n):
                self.buffer.append(self.factory.make())
            self.generated += n
            self._work.set()

    async def _send(self) -> None:
        while True:
            while self.paused or not self.buffer:
                self._work.clear()
                await self._work.wait()
            packet = self.buffer.popleft()
            self.in_flight += 1
            target = self.targets.pick()
            try:
                outcome, retry_after = await self._post(packet, target)
            finally:
                self.in_flight -= 1
            if outcome is Outcome.DELIVERED:
                self.targets.succeeded(target)
                if self.record_delivery(packet):
                    self._report.set()
                self._changed.set()
            elif outcome is Outcome.REJECTED:
                self._changed.set()
            else:
                # Back to the front, so the buffer keeps its order; the next attempt goes to
                # another distributor at once if one is up, else waits out the backoff.
                self.buffer.appendleft(packet)
                self.retries += 1
                self.failures += 1
                self._work.set()
                wait = self.targets.failed(target, retry_after)
                if wait > 0:
                    await asyncio.sleep(wait)

    def record_delivery(self, packet: Outgoing) -> bool:
        """The distributor took `packet`; True when it is the first since contact was lost
        (it may have restarted and forgotten us: register now, not at the next renewal)."""
        self.failures = 0
        self.sent_packets += 1
        self.sent_messages += packet.messages
        self.sent_ids.append(packet.id)
        regained, self.lost_contact = self.lost_contact, False
        return regained

    def record_rejection(self, packet: Outgoing, status: int, reason: str) -> None:
        """The distributor said `packet` itself will never be accepted: counted and logged."""
        self.rejected += 1
        self.last_error = f"HTTP {status}: {reason}"
        event(
            log,
            "rejected",
            logging.ERROR,
            emitter=self.cfg.id,
            packet=packet.id,
            status=status,
            reason=reason,
        )

    async def _post(self, packet: Outgoing, to: int) -> tuple[Outcome, float | None]:
        try:
            answer = await self._poster.post(
                self._targets[to], packet.body, JSON_FIELDS, self.cfg.timeout
            )
        except ForwardError as exc:
            self.last_error = str(exc)
            self.lost_contact = True
            return Outcome.RETRY, None
        if 200 <= answer.status < 300:
            return Outcome.DELIVERED, None
        reason = answer.body[:200].decode(errors="replace")
        if answer.status in REJECTING:
            self.record_rejection(packet, answer.status, reason)
            return Outcome.REJECTED, None
        self.last_error = f"HTTP {answer.status}: {reason}"
        return Outcome.RETRY, answer.retry_after

    async def _register(self, bound: BoundAddress) -> None:
        """Register, then keep the lease: every `renew` seconds the distributor asked for
        (jittered, so that a fleet started at once does not renew at once) unless packets
        were accepted meanwhile (each renews the lease), and at once when this emitter's
        state changes (pause, resume, rate) so the distributor's view follows. Until the
        distributor has heard of us, try again every second."""
        assert self._session is not None
        url = await bound.wait()
        renew: float | None = None
        sent_mark = -1
        while True:
            if needs_renewal(self.registered, self._report.is_set(), self.sent_packets, sent_mark):
                self._report.clear()
                ok, answered, where = False, None, self.targets.urls[0]
                for i in self.targets.order():
                    where = self.targets.urls[i]
                    ok, answered = await self._register_once(where, url)
                    if ok:
                        break
                renew = answered or renew
                if ok != self.registered:
                    event(
                        log,
                        "registered" if ok else "unregistered",
                        emitter=self.cfg.id,
                        distributor=where,
                    )
                self.registered = ok
            sent_mark = self.sent_packets
            if self.registered:
                wait = (renew or self.cfg.register_interval) * random.uniform(0.8, 1.2)
            else:
                wait = min(1.0, self.cfg.register_interval)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._report.wait()

    async def _register_once(self, base: str, url: str) -> tuple[bool, float | None]:
        """POST the registration to distributor `base`; whether it was taken, and the
        renewal interval asked."""
        assert self._session is not None
        try:
            async with self._session.post(
                base.rstrip("/") + "/emitters/register",
                json=registration(self.cfg, url, self.metrics()),
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout),
            ) as resp:
                raw = await resp.read()
                if resp.status == 200:
                    return True, renew_from(raw)
                return False, None
        except (TimeoutError, aiohttp.ClientError):
            return False, None


def registration(cfg: EmitterConfig, url: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """What an emitter registers with: its id, control URL, metrics, and the control token
    the distributor's control calls present."""
    return {"id": cfg.id, "url": url, "metrics": metrics, "secret": cfg.control_token}


def needs_renewal(registered: bool, changed: bool, sent: int, sent_mark: int) -> bool:
    """Whether an emitter must call the distributor now: not registered yet, its state
    changed, or no packet of its was accepted since the last look (packets renew the lease)."""
    return not registered or changed or sent == sent_mark


def renew_from(raw: bytes) -> float | None:
    """The renewal interval a distributor's registration answer asks for, if any."""
    try:
        value = orjson.loads(raw).get("renew")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None
