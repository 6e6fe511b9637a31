"""The forwarding client against real sockets: reuse, stale connections, failures."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiohttp import web

from logdist.net.pool import (
    MAX_PER_HOST,
    Answer,
    Forwarder,
    ForwardError,
    framing,
    target,
)
from tests.support.procs import free_port


async def post(
    fwd: Forwarder,
    url: str,
    body: bytes,
    ctype: str,
    timeout: float,
    headers: tuple[tuple[str, str], ...] = (),
) -> Answer:
    return await fwd.post(target(url, headers), body, framing(ctype), timeout)


class Upstream:
    def __init__(self) -> None:
        self.bodies: list[tuple[str, str, bytes]] = []
        self.peers: set[Any] = set()
        self.status = 200
        self.delay = 0.0
        self.close = False
        self.headers: list[dict[str, str]] = []
        self.answer_headers: dict[str, str] = {}

    async def ingest(self, request: web.Request) -> web.Response:
        self.peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        self.bodies.append((request.path_qs, request.content_type, await request.read()))
        self.headers.append(dict(request.headers))
        if self.delay:
            await asyncio.sleep(self.delay)
        headers = {"Connection": "close"} if self.close else {}
        headers.update(self.answer_headers)
        body = {"ok": self.status == 200, "why": "x" * 400}
        return web.json_response(body, status=self.status, headers=headers)


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
        assert (await post(fwd, url, b"body%d" % i, "application/x-ndjson", 5)).status == 200
    assert [b for _, _, b in up.bodies] == [b"body%d" % i for i in range(5)]
    assert up.bodies[0][:2] == ("/ingest?slot=3", "application/x-ndjson")
    assert len(up.peers) == 1
    fwd.close()


async def test_many_targets_on_one_host_share_its_pool_instead_of_each_opening_one(
    upstream: tuple[Upstream, str],
) -> None:
    """Thousands of analyzers behind one host:port (a query apart): at most MAX_PER_HOST
    requests at once, on connections that are kept and reused, and every one delivered."""
    up, url = upstream
    up.delay = 0.01
    fwd = Forwarder()
    answers = await asyncio.gather(
        *(
            post(fwd, url.replace("slot=3", f"slot={i}"), b"{}", "application/json", 10.0)
            for i in range(300)
        )
    )
    assert [a.status for a in answers] == [200] * 300
    assert len(up.bodies) == 300 and len({path for path, _, _ in up.bodies}) == 300
    assert len(up.peers) <= MAX_PER_HOST
    fwd.close()


async def test_status_is_returned_and_connection_close_is_honoured(
    upstream: tuple[Upstream, str],
) -> None:
    up, url = upstream
    up.status, up.close = 503, True
    fwd = Forwarder()
    assert (await post(fwd, url, b"x", "application/json", 5)).status == 503
    assert (await post(fwd, url, b"y", "application/json", 5)).status == 503
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
    assert (await post(fwd, url, b"a", "application/json", 5)).status == 200
    await asyncio.sleep(0.3)  # the server closes the idle connection
    assert (await post(fwd, url, b"b", "application/json", 5)).status == 200
    assert [b for _, _, b in up.bodies] == [b"a", b"b"]
    fwd.close()


async def test_timeout_and_refused_connections_are_forward_errors(
    upstream: tuple[Upstream, str],
) -> None:
    up, url = upstream
    up.delay = 2.0
    fwd = Forwarder()
    with pytest.raises(ForwardError, match="timeout"):
        await post(fwd, url, b"x", "application/json", 0.2)
    with pytest.raises(ForwardError, match="connect failed"):
        await post(fwd, f"http://127.0.0.1:{free_port()}/ingest", b"x", "application/json", 2)
    fwd.close()


async def test_the_analyzers_own_headers_go_with_every_request(
    upstream: tuple[Upstream, str],
) -> None:
    up, url = upstream
    fwd = Forwarder()
    headers = (("Authorization", "Bearer s3cret"), ("X-Scope", "team-a"))
    for body in (b"a", b"b"):
        assert (await post(fwd, url, body, "application/x-ndjson", 5, headers)).status == 200
    for seen in up.headers:
        assert seen["Authorization"] == "Bearer s3cret"
        assert seen["X-Scope"] == "team-a"
        assert seen["Content-Type"] == "application/x-ndjson"
    fwd.close()


async def test_a_refusal_carries_its_retry_after_and_the_first_bytes_of_its_answer(
    upstream: tuple[Upstream, str],
) -> None:
    up, url = upstream
    up.status, up.answer_headers = 429, {"Retry-After": "7"}
    fwd = Forwarder()
    answer = await post(fwd, url, b"x", "application/json", 5)
    assert answer.status == 429 and answer.retry_after == 7.0
    assert answer.body.startswith(b'{"ok": false') and len(answer.body) == 256
    up.status, up.answer_headers = 400, {}
    answer = await post(fwd, url, b"y", "application/json", 5)  # same connection, reset
    assert (answer.status, answer.retry_after) == (400, None)
    fwd.close()


async def test_a_get_reads_the_answer_and_its_first_bytes(aiohttp_server: Any) -> None:
    async def health(request: web.Request) -> web.Response:
        assert request.method == "GET" and request.headers["X-Key"] == "k"
        return web.json_response({"status": "ok", "batch": True})

    app = web.Application()
    app.router.add_get("/health", health)
    server = await aiohttp_server(app)
    client = Forwarder()
    t = target(str(server.make_url("/health")), (("X-Key", "k"),), method="GET")
    for _ in range(3):  # on one kept-alive connection
        answer = await client.get(t, 2.0)
        assert answer.status == 200 and orjson.loads(answer.body)["batch"] is True
    client.close()
