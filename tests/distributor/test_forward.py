"""The forwarding client against real sockets: reuse, stale connections, failures."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from logdist.distributor.forward import Forwarder, ForwardError
from tests.e2e.procs import free_port


class Upstream:
    def __init__(self) -> None:
        self.bodies: list[tuple[str, str, bytes]] = []
        self.peers: set[Any] = set()
        self.status = 200
        self.delay = 0.0
        self.close = False

    async def ingest(self, request: web.Request) -> web.Response:
        self.peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        self.bodies.append((request.path_qs, request.content_type, await request.read()))
        if self.delay:
            await asyncio.sleep(self.delay)
        headers = {"Connection": "close"} if self.close else None
        return web.json_response({"ok": True}, status=self.status, headers=headers)


@pytest.fixture
async def upstream(aiohttp_server: Any) -> tuple[Upstream, str]:
    up = Upstream()
    app = web.Application()
    app.router.add_post("/ingest", up.ingest)
    server = await aiohttp_server(app)
    return up, str(server.make_url("/ingest?slot=3"))


async def test_posts_reuse_one_kept_alive_connection(upstream: tuple[Upstream, str]) -> None:
    up, url = upstream
    fwd = Forwarder()
    for i in range(5):
        assert await fwd.post(url, b"body%d" % i, "application/x-ndjson", 5) == 200
    assert [b for _, _, b in up.bodies] == [b"body%d" % i for i in range(5)]
    assert up.bodies[0][:2] == ("/ingest?slot=3", "application/x-ndjson")
    assert len(up.peers) == 1
    fwd.close()


async def test_status_is_returned_and_connection_close_is_honoured(
    upstream: tuple[Upstream, str],
) -> None:
    up, url = upstream
    up.status, up.close = 503, True
    fwd = Forwarder()
    assert await fwd.post(url, b"x", "application/json", 5) == 503
    assert await fwd.post(url, b"y", "application/json", 5) == 503
    assert len(up.peers) == 2  # the closed one was not reused
    fwd.close()


async def test_a_connection_the_server_closed_while_idle_is_replaced(
    aiohttp_server: Any,
) -> None:
    up = Upstream()
    app = web.Application()
    app.router.add_post("/ingest", up.ingest)
    server = await aiohttp_server(app, keepalive_timeout=0.1)
    url = str(server.make_url("/ingest"))
    fwd = Forwarder()
    assert await fwd.post(url, b"a", "application/json", 5) == 200
    await asyncio.sleep(0.3)  # the server closes the idle connection
    assert await fwd.post(url, b"b", "application/json", 5) == 200
    assert [b for _, _, b in up.bodies] == [b"a", b"b"]
    fwd.close()


async def test_timeout_and_refused_connections_are_forward_errors(
    upstream: tuple[Upstream, str],
) -> None:
    up, url = upstream
    up.delay = 2.0
    fwd = Forwarder()
    with pytest.raises(ForwardError, match="timeout"):
        await fwd.post(url, b"x", "application/json", 0.2)
    with pytest.raises(ForwardError, match="connect failed"):
        await fwd.post(f"http://127.0.0.1:{free_port()}/ingest", b"x", "application/json", 2)
    fwd.close()
