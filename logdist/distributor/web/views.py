"""What the distributor shows: /status, /health, /metrics, routed logs, search across the
pool, and the live WebSockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from logdist.core import paging
from logdist.core.routed import LogFilter
from logdist.distributor.node import Distributor
from logdist.distributor.web.keys import DISTRIBUTOR, SOCKETS
from logdist.net.web import (
    JSON,
    json_response,
)
from logdist.search.pool import PoolSearch
from logdist.search.pool import parse as parse_search
from logdist.search.query import parse_context

# -- status -------------------------------------------------------------------------------


def status_body(d: Distributor) -> bytes:
    """The /status document as sent (a GET, or one /ws/metrics frame), its cost metered."""
    with d.control.timed("views"):
        return orjson.dumps(d.views.status())


async def status(request: web.Request) -> web.Response:
    body = status_body(request.app[DISTRIBUTOR])
    return web.Response(body=body, content_type=JSON)


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def prometheus(request: web.Request) -> web.Response:
    body = generate_latest(request.app[DISTRIBUTOR].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# -- routed logs and live views -----------------------------------------------------------


def log_query(request: web.Request) -> tuple[int, LogFilter]:
    q = request.query
    n = paging.read_int(q, "n", 100, 0, 100_000)
    return n, LogFilter(q.get("analyzer") or None, q.get("emitter") or None, q.get("level") or None)


async def recent_logs(request: web.Request) -> web.Response:
    """The last `n` routed messages (filters: analyzer, emitter, level), oldest first."""
    n, flt = log_query(request)
    return json_response(request.app[DISTRIBUTOR].logs.ring.recent(n, flt))


def _pool(request: web.Request) -> PoolSearch:
    d = request.app[DISTRIBUTOR]
    return PoolSearch(d.registry, d.session, d.cfg.search_timeout)


async def search_logs(request: web.Request) -> web.Response:
    """Stored messages from every analyzer with a store, newest first, paged by `cursor`."""
    return json_response(await _pool(request).search(parse_search(request.query)))


async def histogram_logs(request: web.Request) -> web.Response:
    """Stored messages per time bucket and level, summed over the analyzers' stores."""
    return json_response(await _pool(request).histogram(parse_search(request.query)))


async def context_logs(request: web.Request) -> web.Response:
    """The messages around one stored message, from the same emitter, in time order."""
    packet, index, before, after = parse_context(request.query)
    return json_response(await _pool(request).context(packet, index, before, after))


async def _stream(
    request: web.Request, produce: Callable[[web.WebSocketResponse], Awaitable[None]]
) -> web.WebSocketResponse:
    """Run `produce` on a new WebSocket while reading it, so a client's close is seen at once."""
    ws = web.WebSocketResponse(heartbeat=20)
    await ws.prepare(request)
    sockets = request.app[SOCKETS]
    sockets.add(ws)
    sender = asyncio.ensure_future(produce(ws))
    try:
        async for _ in ws:
            pass  # clients send nothing; this is where their close arrives
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
            await sender
        sockets.discard(ws)
    return ws


async def ws_logs(request: web.Request) -> web.WebSocketResponse:
    """The backlog of routed messages, then each new one as routed (`follow=0`: backlog only)."""
    d = request.app[DISTRIBUTOR]
    n, flt = log_query(request)
    follow = request.query.get("follow", "1") not in ("0", "false", "no")

    async def produce(ws: web.WebSocketResponse) -> None:
        sub = d.logs.subscribe(flt) if follow else None
        try:
            for entry in d.logs.ring.recent(n, flt):
                await ws.send_bytes(orjson.dumps(entry))
            if sub is None:
                await ws.close()
                return
            while True:
                await ws.send_bytes(orjson.dumps(await sub.queue.get()))
        finally:
            if sub is not None:
                d.logs.unsubscribe(sub)

    return await _stream(request, produce)


async def ws_metrics(request: web.Request) -> web.WebSocketResponse:
    """The `/status` document once a second."""
    d = request.app[DISTRIBUTOR]

    async def produce(ws: web.WebSocketResponse) -> None:
        while True:
            await ws.send_bytes(status_body(d))
            await asyncio.sleep(1.0)

    return await _stream(request, produce)


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/status", status)
    r.add_get("/health", health)
    r.add_get("/metrics", prometheus)
    r.add_get("/logs", recent_logs)
    r.add_get("/logs/search", search_logs)
    r.add_get("/logs/histogram", histogram_logs)
    r.add_get("/logs/context", context_logs)
    r.add_get("/ws/logs", ws_logs)
    r.add_get("/ws/metrics", ws_metrics)
