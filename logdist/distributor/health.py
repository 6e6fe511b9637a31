"""Active health checks: `GET /health` beside each analyzer's ingest URL (or its own
`health_url`, with its headers), one task per analyzer. Analyzers with passive health are
not probed: the dispatcher judges them by their forwards."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

from logdist.config import HealthConfig
from logdist.core.registry import HealthChange, Registry
from logdist.http import describe_error

log = logging.getLogger("logdist.health")


def health_url(ingest_url: str) -> str:
    """The health URL beside an ingest URL: `http://h/api/ingest` -> `http://h/api/health`."""
    parts = urlsplit(ingest_url)
    base = parts.path.rsplit("/", 1)[0] if "/" in parts.path else ""
    return urlunsplit((parts.scheme, parts.netloc, f"{base}/health", "", ""))


MAX_PROBES = 64


class HealthChecker:
    """Probes every analyzer every `interval`; `on_change` hears each up/down transition."""

    def __init__(
        self,
        cfg: HealthConfig,
        registry: Registry,
        on_change: Callable[[HealthChange], None],
    ) -> None:
        self.cfg = cfg
        self.registry = registry
        self.on_change = on_change
        self._session: aiohttp.ClientSession | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._timeout = aiohttp.ClientTimeout(total=cfg.timeout)
        # Thousands of analyzers are probed a few dozen at a time, not in one burst whose
        # own queueing would time the probes out.
        self._gate = asyncio.Semaphore(MAX_PROBES)

    def start(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        for analyzer in self.registry:
            self.watch(analyzer.id)

    def watch(self, aid: str) -> None:
        if self._session is not None and aid not in self._tasks:
            self._tasks[aid] = asyncio.get_running_loop().create_task(self._loop(aid))

    def unwatch(self, aid: str) -> None:
        task = self._tasks.pop(aid, None)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self, aid: str) -> None:
        while aid in self.registry:
            async with self._gate:
                await self.probe(aid)
            # +-10 %: probes started together drift apart instead of staying in step.
            await asyncio.sleep(self.cfg.interval * random.uniform(0.9, 1.1))

    async def probe(self, aid: str) -> None:
        assert self._session is not None
        analyzer = self.registry.get(aid)
        delivery = analyzer.delivery
        if delivery.passive:
            return
        url = delivery.health_url or health_url(analyzer.url)
        headers = dict(delivery.headers) if delivery.headers else None
        batch = False
        reason: str | None = None
        try:
            async with self._session.get(url, headers=headers, timeout=self._timeout) as resp:
                body = await resp.read()
                if resp.status != 200:
                    reason = f"health HTTP {resp.status}"
                else:
                    batch = _says_batch(body)
        except (TimeoutError, aiohttp.ClientError) as exc:
            reason = f"health {describe_error(exc)}"
        if aid not in self.registry or self.registry.get(aid).delivery.passive:
            return
        if reason is None:
            change = self.registry.record_success(aid, batch=batch)
        else:
            change = self.registry.record_failure(aid, reason)
        if change is not None:
            self.on_change(change)


def _says_batch(body: bytes) -> bool:
    """A logdist analyzer's health answer says `"batch": true`; anything else gets single POSTs."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and data.get("batch") is True
