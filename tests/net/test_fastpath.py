"""The front door at the socket: what raw HTTP clients see (pipelining, keep-alive, stalls)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from logdist.config import DistributorConfig
from logdist.distributor.inputs.packets import Front
from logdist.distributor.node import Distributor
from logdist.distributor.web.app import make_app
from logdist.distributor.web.keys import DISTRIBUTOR
from logdist.net import server
from logdist.net.answers import response
from logdist.net.fastpath import Connection, FrontDoor
from logdist.net.server import LISTENER, Listener
from tests.support.serving import read_response

PACKET = b'{"messages":[{"message":"hi"}],"packetId":"%s"}'


def post(path: str, body: bytes, *extra: str, version: str = "1.1") -> bytes:
    head = [f"POST {path} HTTP/{version}", "Host: localhost", f"Content-Length: {len(body)}"]
    head += ["Content-Type: application/json", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Door:
    """A distributor served through its front door on 127.0.0.1, and raw connections to it."""

    def __init__(self, listening: server.Listening, app: web.Application, front: Front) -> None:
        self.listening = listening
        self.distributor: Distributor = app[DISTRIBUTOR]
        self.front = front
        self.port = int(listening.url.rsplit(":", 1)[1])
        self.writers: list[asyncio.StreamWriter] = []

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers.append(writer)
        return reader, writer

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


@pytest.fixture
async def door(request: pytest.FixtureRequest) -> AsyncIterator[Door]:
    kwargs: dict[str, Any] = getattr(request, "param", {})
    timeouts = {k: kwargs.pop(k) for k in ("keepalive_timeout", "body_timeout") if k in kwargs}
    app = make_app(DistributorConfig(drain_timeout=0.1, **kwargs))
    front = Front(app[DISTRIBUTOR].intake, **timeouts)
    app[LISTENER] = Listener(front.factory, front.close)
    listening = await server.listen(app, "127.0.0.1", 0)
    door = Door(listening, app, front)
    yield door
    door.close()
    await listening.stop()


async def test_pipelined_packets_are_answered_in_order(door: Door) -> None:
    reader, writer = await door.connect()
    writer.write(b"".join(post("/log-packet", PACKET % str(i).encode()) for i in range(5)))
    ids = [orjson.loads((await read_response(reader))[2])["packetId"] for _ in range(5)]
    assert ids == ["0", "1", "2", "3", "4"]
    assert [p.id for p in door.distributor.dispatcher.queue] == ids


async def test_a_close_pipelined_behind_keep_alive_answers_in_order_then_closes(
    door: Door,
) -> None:
    reader, writer = await door.connect()
    writer.write(
        post("/log-packet", PACKET % b"0")
        + post("/log-packet", PACKET % b"1")
        + post("/log-packet", PACKET % b"2", "Connection: close")
        + post("/log-packet", PACKET % b"3")  # after the close: never read
    )
    answers = [await read_response(reader) for _ in range(3)]
    assert [orjson.loads(body)["packetId"] for _, _, body in answers] == ["0", "1", "2"]
    assert [headers.get("connection") for _, headers, _ in answers] == [None, None, "close"]
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert [p.id for p in door.distributor.dispatcher.queue] == ["0", "1", "2"]


class Wire:
    """A transport that records what is written to it, for counting writes."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


async def test_answers_made_in_one_loop_turn_go_out_in_one_write() -> None:
    front = Front(Distributor(DistributorConfig()).intake)
    make = front.factory(cast(web.Server, None))
    conns = [cast(Connection, make()) for _ in range(2)]
    wires = [Wire(), Wire()]
    for conn, wire in zip(conns, wires, strict=True):
        conn.connection_made(wire)  # type: ignore[arg-type]
    conns[0].data_received(b"".join(post("/log-packet", PACKET % b"%d" % i) for i in range(3)))
    conns[1].data_received(post("/log-packet", PACKET % b"3"))
    # Answered, not yet written: the writes wait for the end of the loop turn...
    assert wires[0].writes == [] and wires[1].writes == []
    await asyncio.sleep(0)
    # ...then one write a connection, its answers in order.
    assert [len(w.writes) for w in wires] == [1, 1]
    assert wires[0].writes[0].count(b"HTTP/1.1 202") == 3
    assert wires[0].writes[0].index(b'"0"') < wires[0].writes[0].index(b'"2"')
    await front.close()


async def test_admin_request_after_ingest_on_one_connection_is_served_by_aiohttp(
    door: Door,
) -> None:
    reader, writer = await door.connect()
    writer.write(post("/log-packet", PACKET % b"p1"))
    assert (await read_response(reader))[0] == 202
    writer.write(b"GET /status HTTP/1.1\r\nHost: localhost\r\n\r\n")
    status, _, body = await read_response(reader)
    assert status == 200 and orjson.loads(body)["counters"]["received_packets"] == 1
    # ...and that connection stays with aiohttp, ingest included.
    writer.write(post("/log-packet", PACKET % b"p2"))
    assert (await read_response(reader))[0] == 202
    assert door.front.handed_off == 1


async def test_a_request_pipelined_behind_ingest_must_be_ingest(door: Door) -> None:
    reader, writer = await door.connect()
    writer.write(
        post("/log-packet", PACKET % b"p1") + b"GET /status HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    assert (await read_response(reader))[0] == 202
    status, headers, body = await read_response(reader)
    assert status == 400 and "own connection" in orjson.loads(body)["error"]
    assert headers["connection"] == "close" and await reader.read() == b""


@pytest.mark.parametrize("door", [{"max_body_bytes": 1000}], indirect=True)
async def test_oversized_content_length_is_refused_before_the_body(door: Door) -> None:
    reader, writer = await door.connect()
    writer.write(
        b"POST /log-packet HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    status, headers, body = await read_response(reader)
    assert status == 413 and orjson.loads(body)["detail"] == {"limit": 1000}
    assert headers["connection"] == "close"
    assert door.distributor.counters.rejected["payload_too_large"] == 1


async def test_expect_continue_gets_100_then_202(door: Door) -> None:
    reader, writer = await door.connect()
    body = PACKET % b"p1"
    writer.write(
        b"POST /log-packet HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n"
        b"Expect: 100-continue\r\n\r\n" % len(body)
    )
    assert (
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
    )
    writer.write(body)
    assert (await read_response(reader))[0] == 202


async def test_http_1_0_client_gets_its_answer_then_the_close(door: Door) -> None:
    reader, writer = await door.connect()
    writer.write(post("/log-packet", PACKET % b"p1", version="1.0"))
    status, headers, _ = await read_response(reader)
    assert status == 202 and headers["connection"] == "close"
    assert await asyncio.wait_for(reader.read(), 5) == b""


async def test_malformed_http_gets_a_json_400(door: Door) -> None:
    reader, writer = await door.connect()
    writer.write(b"POST /log-packet HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
    status, _, body = await read_response(reader)
    assert status == 400 and orjson.loads(body)["code"] == "bad_request"


@pytest.mark.parametrize("door", [{"body_timeout": 0.3, "keepalive_timeout": 0.6}], indirect=True)
async def test_stalled_body_gets_408_and_idle_connections_close(door: Door) -> None:
    stalled_r, stalled_w = await door.connect()
    stalled_w.write(post("/log-packet", PACKET % b"p1")[:-5])
    idle_r, idle_w = await door.connect()
    idle_w.write(post("/log-packet", PACKET % b"p2"))
    assert (await read_response(idle_r))[0] == 202
    status, headers, body = await read_response(stalled_r)
    assert status == 408 and orjson.loads(body)["code"] == "request_timeout"
    assert await asyncio.wait_for(stalled_r.read(), 5) == b""
    # The idle keep-alive connection is closed by the distributor, with nothing owed.
    assert await asyncio.wait_for(idle_r.read(), 5) == b""
    assert [p.id for p in door.distributor.dispatcher.queue] == ["p2"]


@pytest.mark.parametrize("door", [{"ingest_token": "s3cret"}], indirect=True)
async def test_ingest_token_is_required_on_the_front_door(door: Door) -> None:
    reader, writer = await door.connect()
    writer.write(post("/log-packet", PACKET % b"p1"))
    status, headers, _ = await read_response(reader)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    reader, writer = await door.connect()
    writer.write(post("/log-packet", PACKET % b"p2", "Authorization: Bearer s3cret"))
    assert (await read_response(reader))[0] == 202


async def test_fsync_always_answers_after_the_sync_in_order(tmp_path: Any) -> None:
    app = make_app(DistributorConfig(drain_timeout=0.1, spool_dir=str(tmp_path), fsync="always"))
    listening = await server.listen(app, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", int(listening.url.split(":")[2]))
    try:
        writer.write(b"".join(post("/log-packet", PACKET % str(i).encode()) for i in range(20)))
        ids = [orjson.loads((await read_response(reader))[2])["packetId"] for _ in range(20)]
        assert ids == [str(i) for i in range(20)]
        d: Distributor = app[DISTRIBUTOR]
        assert [p.id for p in d.dispatcher.queue] == ids
        assert d.spool is not None
        assert sum(seg.records for seg in d.spool.segments.values()) == 20
    finally:
        writer.close()
        await listening.stop()


async def test_websocket_upgrade_passes_through_the_front_door(door: Door) -> None:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{door.listening.url}/ws/metrics") as ws,
    ):
        status = orjson.loads((await ws.receive(timeout=5)).data)
        assert "queue" in status


async def test_plain_aiohttp_serving_takes_packets_by_the_same_rules(aiohttp_client: Any) -> None:
    app = make_app(DistributorConfig(drain_timeout=0.1))
    client = await aiohttp_client(TestServer(app))
    resp = await client.post(
        "/log-packet", data=PACKET % b"p1", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 202 and (await resp.json())["packetId"] == "p1"
    resp = await client.post("/log-packet", data=b"{", headers={"Content-Type": "application/json"})
    assert resp.status == 400 and (await resp.json())["code"] == "malformed_json"


@pytest.mark.parametrize("door", [{"queue_capacity": 2, "queue_wait": 0.3}], indirect=True)
async def test_full_queue_holds_a_request_then_answers_503(door: Door) -> None:
    reader, writer = await door.connect()
    writer.write(b"".join(post("/log-packet", PACKET % str(i).encode()) for i in range(3)))
    assert [(await read_response(reader))[0] for _ in range(2)] == [202, 202]
    started = asyncio.get_running_loop().time()
    status, headers, body = await read_response(reader)
    waited = asyncio.get_running_loop().time() - started
    assert status == 503 and headers["retry-after"] == "1" and waited >= 0.2
    assert orjson.loads(body)["code"] == "backpressure"
    assert [p.id for p in door.distributor.dispatcher.queue] == ["0", "1"]


# Fairness off: the packet taken off the queue by hand below stays held, and with no analyzer
# (no pending window) the fair shares would count it against the queue's two places.
@pytest.mark.parametrize(
    "door", [{"queue_capacity": 2, "queue_wait": 5, "fair_share_above": 0}], indirect=True
)
async def test_held_request_is_taken_when_the_queue_has_room(door: Door) -> None:
    reader, writer = await door.connect()
    writer.write(b"".join(post("/log-packet", PACKET % str(i).encode()) for i in range(3)))
    assert [(await read_response(reader))[0] for _ in range(2)] == [202, 202]
    third = asyncio.ensure_future(read_response(reader))
    await asyncio.sleep(0.2)
    assert not third.done() and len(door.front.waiting) == 1
    dispatcher = door.distributor.dispatcher
    dispatcher.queue.popleft()  # as if routed to an analyzer
    dispatcher.queued -= 1
    dispatcher.wake()
    status, _, body = await third
    assert status == 202 and orjson.loads(body)["packetId"] == "2"
    assert [p.id for p in dispatcher.queue] == ["1", "2"]


@pytest.mark.parametrize("door", [{"queue_capacity": 1, "queue_wait": 5}], indirect=True)
async def test_waiting_requests_get_503_when_the_distributor_stops(door: Door) -> None:
    reader, writer = await door.connect()
    writer.write(b"".join(post("/log-packet", PACKET % str(i).encode()) for i in range(2)))
    assert (await read_response(reader))[0] == 202
    for _ in range(100):
        if door.front.waiting:
            break
        await asyncio.sleep(0.01)
    await door.front.close()
    status, headers, body = await read_response(reader)
    assert status == 503 and "stopping" in orjson.loads(body)["error"]
    assert headers["retry-after"] == "1"


async def test_endless_headers_are_refused_not_buffered(door: Door) -> None:
    reader, writer = await door.connect()
    writer.write(b"POST /log-packet HTTP/1.1\r\nHost: localhost\r\n")
    for i in range(200):
        writer.write(b"X-Pad-%d: %s\r\n" % (i, b"x" * 1000))
    status, headers, body = await read_response(reader)
    assert status == 400 and "exceed" in orjson.loads(body)["error"]
    assert headers["connection"] == "close"


async def test_a_bug_in_a_lean_handler_is_a_json_500_and_the_connection_serves_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(FrontDoor):
        def handle(self, conn: Connection, route: int, ctype: bytes | None, body: bytes) -> None:
            if body == b"{}":
                raise RuntimeError("boom")
            conn.answer(response(200, b"{}", close=conn.close_after))

    app = web.Application()
    broken = Broken({b"/x": 1}, {1: 1000})
    app[LISTENER] = Listener(broken.factory, broken.close)
    listening = await server.listen(app, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", int(listening.url.split(":")[-1]))
    try:
        writer.write(post("/x", b"{}"))
        status, _, body = await read_response(reader)
        assert status == 500 and orjson.loads(body)["code"] == "internal_error"
        assert "event=handler_error" in caplog.text and "RuntimeError: boom" in caplog.text
        writer.write(post("/x", b"[]"))
        assert (await read_response(reader))[0] == 200
    finally:
        writer.close()
        await writer.wait_closed()
        await listening.stop()
