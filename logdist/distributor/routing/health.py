"""Active health checks: `GET /health` beside each analyzer's ingest URL (or its own
`health_url`, with its headers), within a budget of probes a second. Analyzers with passive
health are not probed: the dispatcher judges them by their forwards."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import ssl
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import orjson

from logdist.config import HealthConfig
from logdist.core.registry import HealthChange, Registry
from logdist.events import event
from logdist.net.pool import Answer, Forwarder, ForwardError, target
from logdist.net.stream import StreamSender

log = logging.getLogger("logdist.health")


def health_url(ingest_url: str) -> str:
    """The health URL beside an ingest URL: `http://h/api/ingest` -> `http://h/api/health`."""
    parts = urlsplit(ingest_url)
    base = parts.path.rsplit("/", 1)[0] if "/" in parts.path else ""
    return urlunsplit((parts.scheme, parts.netloc, f"{base}/health", "", ""))


# Probes in flight at once: thousands of analyzers are probed a few dozen at a time, not in
# one burst whose own queueing would time the probes out.
MAX_PROBES = 64
# The probe scheduler's shortest sleep (seconds).
TICK = 0.1


class HealthChecker:
    """Probes every analyzer every `interval`, within a budget of `max_probes` a second;
    `on_change` hears each up/down transition.

    One scheduler for all of them (a heap of due times), not a task each: past
    `max_probes * interval` analyzers the round stretches to `count / max_probes` seconds
    (said in `to_json` and logged once), while forwards keep judging every analyzer
    passively in between (`fall` failed forwards in a row take one down).
    """

    def __init__(
        self,
        cfg: HealthConfig,
        registry: Registry,
        on_change: Callable[[HealthChange], None],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.cfg = cfg
        self.registry = registry
        self.on_change = on_change
        # Probes go over kept-alive connections with the lean client (logdist.net.pool).
        self._client = Forwarder(tls)
        self._streams = StreamSender(tls)
        self._due: list[tuple[float, int, str]] = []
        self._seq = 0
        self._watched: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._gate = asyncio.Semaphore(MAX_PROBES)
        self.probes = 0
        self._stretched = False

    def start(self) -> None:
        for analyzer in self.registry:
            self.watch(analyzer.id)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def watch(self, aid: str) -> None:
        """Probe `aid` from now on: at once, or (many added together) as the budget allows,
        in the order they were added."""
        if aid in self._watched:
            return
        self._watched.add(aid)
        self._push(aid, time.monotonic())

    def unwatch(self, aid: str) -> None:
        self._watched.discard(aid)  # its heap entry is dropped when it comes up

    def _push(self, aid: str, when: float) -> None:
        self._seq += 1
        heapq.heappush(self._due, (when, self._seq, aid))
        self._wake.set()

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._running) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        self._client.close()

    @property
    def cycle(self) -> float:
        """Seconds between two probes of one analyzer: the interval, or longer when the
        budget cannot probe them all that often."""
        return max(self.cfg.interval, len(self._watched) / self.cfg.max_probes)

    def to_json(self) -> dict[str, object]:
        return {
            "interval": self.cfg.interval,
            "max_probes": self.cfg.max_probes,
            "probed": len(self._watched),
            "cycle": round(self.cycle, 3),
            "stretched": self.cycle > self.cfg.interval,
            "probes": self.probes,
        }

    async def _run(self) -> None:
        due = self._due
        spacing = 1.0 / self.cfg.max_probes
        next_slot = 0.0
        while True:
            if not due:
                self._wake.clear()
                await self._wake.wait()
                continue
            now = time.monotonic()
            start = max(due[0][0], next_slot)
            if start > now:
                # Asleep at least TICK: the probes due meanwhile then go together, within
                # the budget, and the loop wakes a few times a second, not once a probe.
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(start - now, TICK)):
                        await self._wake.wait()
                continue
            _, _, aid = heapq.heappop(due)
            if aid not in self._watched or aid not in self.registry:
                self._watched.discard(aid)
                continue
            self._say_if_stretched()
            if self.registry.get(aid).delivery.passive:
                # Judged by its forwards: nothing to probe, and no budget spent.
                self._push(aid, now + self.cfg.interval)
                continue
            # The budget's slots: those of the last TICK not used yet may be used now.
            next_slot = max(now - TICK, next_slot) + spacing
            await self._gate.acquire()
            task = asyncio.get_running_loop().create_task(self._probe_then_requeue(aid))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _probe_then_requeue(self, aid: str) -> None:
        try:
            self.probes += 1
            await self.probe(aid)
        finally:
            self._gate.release()
            if aid in self._watched:
                # +-10 %: probes started together drift apart instead of staying in step.
                self._push(aid, time.monotonic() + self.cycle * random.uniform(0.9, 1.1))

    def _say_if_stretched(self) -> None:
        stretched = self.cycle > self.cfg.interval
        if stretched != self._stretched:
            self._stretched = stretched
            event(
                log,
                "health_budget",
                logging.WARNING if stretched else logging.INFO,
                analyzers=len(self._watched),
                max_probes=self.cfg.max_probes,
                interval=self.cfg.interval,
                cycle=round(self.cycle, 1),
                stretched=stretched,
            )

    async def probe(self, aid: str) -> None:
        analyzer = self.registry.get(aid)
        delivery = analyzer.delivery
        if delivery.passive:
            return
        url = delivery.health_url or health_url(analyzer.url)
        batch = store = otlp = False
        reason: str | None = None
        try:
            if delivery.format == "syslog" and delivery.health_url is None:
                # A syslog receiver answers nothing: that it takes a connection is its health.
                await self._streams.probe(analyzer.url, self.cfg.timeout)
                answer = Answer(200)
            else:
                answer = await self._client.get(
                    target(url, delivery.headers, method="GET"), self.cfg.timeout
                )
        except ForwardError as exc:
            reason = f"health {exc}"
        else:
            if answer.status != 200:
                reason = f"health HTTP {answer.status}"
            else:
                batch, store, otlp = _says(answer.body)
        if aid not in self.registry or self.registry.get(aid).delivery.passive:
            return
        if reason is None:
            change = self.registry.record_success(aid, batch=batch, store=store, otlp=otlp)
        else:
            change = self.registry.record_failure(aid, reason)
        if change is not None:
            self.on_change(change)


def _says(body: bytes) -> tuple[bool, bool, bool]:
    """Whether a health answer says `"batch": true` (a logdist analyzer: anything else gets
    single POSTs), `"store": true` (it keeps a searchable store) and `"otlp": true` (it takes
    OTLP requests as they came)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False, False, False
    if not isinstance(data, dict):
        return False, False, False
    return data.get("batch") is True, data.get("store") is True, data.get("otlp") is True
