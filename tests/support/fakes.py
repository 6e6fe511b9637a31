"""Fake peers for HTTP tests: real aiohttp apps on port 0 that can fail, slow down or die."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class FakeAnalyzer:
    """Records what it receives. `batch` is what its /health advertises.

    `refuse`: a body holding these bytes is answered 400 (a search engine's mapping conflict).
    `token`: ingest and health want `Authorization: Bearer <token>` (401 without).
    `health_path`: where its health route is (None: it has none).
    """

    batch: bool = True
    status: int = 200
    delay: float = 0.0
    healthy: bool = True
    refuse: bytes | None = None
    token: str | None = None
    health_path: str | None = "/health"
    answer_headers: dict[str, str] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, int]] = field(default_factory=list)  # (content type, packets)
    # Every ingest request as it came: its headers and its (decoded) body.
    raw: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    probes: list[dict[str, str]] = field(default_factory=list)
    refused: int = 0

    @property
    def ids(self) -> list[str]:
        return [p["packetId"] for p in self.received]

    @property
    def messages(self) -> int:
        return sum(len(p["messages"]) for p in self.received)

    def _authorized(self, request: web.Request) -> bool:
        return self.token is None or request.headers.get("Authorization") == f"Bearer {self.token}"

    async def ingest(self, request: web.Request) -> web.Response:
        body = await request.read()  # aiohttp undoes a Content-Encoding: gzip
        self.raw.append((dict(request.headers), body))
        if self.delay:
            await asyncio.sleep(self.delay)
        if not self._authorized(request):
            return web.json_response({"error": "bad token"}, status=401)
        if self.status != 200:
            return web.json_response(
                {"error": "told to fail"}, status=self.status, headers=self.answer_headers
            )
        if self.refuse is not None and self.refuse in body:
            self.refused += 1
            return web.json_response({"error": "mapping conflict on field 'poison'"}, status=400)
        if request.content_type == "application/x-ndjson":
            packets = [orjson.loads(line) for line in body.splitlines() if line.strip()]
        else:
            parsed = orjson.loads(body)
            packets = parsed if isinstance(parsed, list) else [parsed]
        self.received.extend(packets)
        self.requests.append((request.content_type, len(packets)))
        return web.json_response({"accepted": len(packets)})

    async def health(self, request: web.Request) -> web.Response:
        self.probes.append(dict(request.headers))
        if not self._authorized(request):
            return web.json_response({"error": "bad token"}, status=401)
        if not self.healthy:
            return web.json_response({"status": "sick"}, status=503)
        return web.json_response({"status": "ok", "batch": self.batch})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/ingest", self.ingest)
        if self.health_path is not None:
            app.router.add_get(self.health_path, self.health)
        return app


ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


async def start_analyzer(aiohttp_server: Any, **kwargs: Any) -> tuple[FakeAnalyzer, str]:
    fake = FakeAnalyzer(**kwargs)
    server = await aiohttp_server(fake.app())
    return fake, str(server.make_url("/ingest"))


async def eventually(
    check: Callable[[], bool], timeout: float = 5.0, what: str = "condition"
) -> None:
    """Poll `check` until it is true, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)
