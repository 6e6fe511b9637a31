from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from logdist.config import EmitterConfig
from logdist.emitter.app import Emitter, renew_from
from logdist.emitter.control import EMITTER
from logdist.emitter.generator import PacketFactory, uuid4_from
from logdist.emitter.node import make_app
from logdist.net.server import BOUND
from tests.support.fakes import eventually

Client = TestClient[Any, Any]


@dataclass
class FakeDistributor:
    """Accepts packets (or refuses them with `status`) and records registrations."""

    status: int = 202
    retry_after: str | None = None
    packets: list[dict[str, Any]] = field(default_factory=list)
    registrations: list[dict[str, Any]] = field(default_factory=list)
    # POST /log-packets: packets per request; a batch holding a packet of `refuse_emitter`
    # is refused whole (422), as the distributor refuses a batch with one bad packet.
    batches: list[int] = field(default_factory=list)
    refuse_emitter: str | None = None
    requests: int = 0  # packet requests of either route, taken or not

    async def ingest(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        if self.status != 202:
            headers = {"Retry-After": self.retry_after} if self.retry_after else None
            return web.json_response(
                {"error": "no", "code": "x"}, status=self.status, headers=headers
            )
        packet = orjson.loads(body)
        if packet["emitter"] == self.refuse_emitter:
            return web.json_response({"error": "bad packet", "code": "invalid"}, status=422)
        self.packets.append(packet)
        return web.json_response({"packetId": packet["packetId"]}, status=202)

    async def ingest_many(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-ndjson"
        self.requests += 1
        if self.status != 202:
            return web.json_response({"error": "no", "code": "x"}, status=self.status)
        packets = [orjson.loads(line) for line in (await request.read()).splitlines()]
        if any(p["emitter"] == self.refuse_emitter for p in packets):
            return web.json_response({"error": "bad packet", "code": "invalid"}, status=422)
        self.batches.append(len(packets))
        self.packets.extend(packets)
        return web.json_response({"accepted": len(packets)}, status=202)

    async def register(self, request: web.Request) -> web.Response:
        self.registrations.append(await request.json())
        return web.json_response({})

    @property
    def ids(self) -> list[str]:
        return [p["packetId"] for p in self.packets]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/log-packet", self.ingest)
        app.router.add_post("/log-packets", self.ingest_many)
        app.router.add_post("/emitters/register", self.register)
        return app


CONTROL_TOKEN = "control-token-4c1e9"


async def serve(
    aiohttp_server: Any,
    aiohttp_client: Any,
    fake: FakeDistributor | str,
    *more: FakeDistributor | str,
    **kwargs: Any,
) -> tuple[Client, web.Application]:
    """An emitter daemon's app (one emitter, or a fleet with `fleet=N`) sending to `fake`
    (and to `more` distributors: fakes, or URLs nothing answers at)."""
    urls = []
    for f in (fake, *more):
        if isinstance(f, str):
            urls.append(f)
        else:
            server: TestServer = await aiohttp_server(f.app())
            urls.append(str(server.make_url("")).rstrip("/"))
    kwargs.setdefault("control_token", CONTROL_TOKEN)
    cfg = EmitterConfig(distributor=tuple(urls), **kwargs)
    app = make_app(cfg)
    # As the distributor calls it: with the control token the emitter registered.
    client: Client = await aiohttp_client(app, headers={"Authorization": f"Bearer {CONTROL_TOKEN}"})
    bound = app[BOUND]
    bound.url = str(client.make_url("")).rstrip("/")
    bound.ready.set()
    return client, app


async def start(
    aiohttp_server: Any,
    aiohttp_client: Any,
    fake: FakeDistributor | str,
    *more: FakeDistributor | str,
    **kwargs: Any,
) -> tuple[Client, Emitter]:
    client, app = await serve(aiohttp_server, aiohttp_client, fake, *more, **kwargs)
    return client, app[EMITTER]


def test_generated_packets_have_the_seed_format() -> None:
    factory = PacketFactory("e7", (2, 5), "svc", rand=random.Random(1))
    for _ in range(20):
        out = factory.make()
        packet = orjson.loads(out.body)
        assert set(packet) == {"packetId", "emitter", "messages"}
        assert packet["packetId"] == out.id and packet["emitter"] == "e7"
        assert 2 <= len(packet["messages"]) == out.messages <= 5
        for m in packet["messages"]:
            assert set(m) == {"ts", "level", "service", "host", "message"}
            assert m["ts"].endswith("Z") and m["service"] == "svc" and m["host"] == "e7"
            assert m["level"] in ("INFO", "DEBUG", "WARN", "ERROR")


def test_packet_ids_are_version_4_uuids_as_the_uuid_module_writes_them() -> None:
    rand = random.Random(7)
    for bits in [0, (1 << 128) - 1] + [rand.getrandbits(128) for _ in range(2000)]:
        assert uuid4_from(bits) == str(uuid.UUID(int=bits, version=4))


async def test_emitter_sends_at_its_rate_and_registers(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    fake = FakeDistributor()
    client, emitter = await start(aiohttp_server, aiohttp_client, fake, rate=200, messages=(1, 3))
    await eventually(lambda: len(fake.ids) >= 50, what="packets sent")
    await eventually(lambda: bool(fake.registrations), what="registration")
    first = fake.registrations[0]
    assert (first["id"], first["url"]) == ("e1", str(client.make_url("")).rstrip("/"))
    assert first["metrics"]["emitter_id"] == "e1"  # so the distributor can show its rate and buffer
    sent = await (await client.get("/sent?ids=1")).json()
    assert set(sent["ids"]) <= set(fake.ids) and sent["packets"] == len(sent["ids"])


async def test_pause_stops_generation_and_sending_and_resume_continues(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    fake = FakeDistributor()
    client, emitter = await start(aiohttp_server, aiohttp_client, fake, rate=500)
    await eventually(lambda: len(fake.ids) > 5)
    body = await (await client.post("/pause")).json()
    assert body["paused"] is True
    await eventually(lambda: emitter.in_flight == 0)
    count = len(fake.ids)
    generated = emitter.generated
    await eventually(lambda: emitter.bucket.tokens >= 1, what="time passing")
    assert len(fake.ids) == count and emitter.generated == generated
    await client.post("/resume")
    await eventually(lambda: len(fake.ids) > count + 5, what="sending again")


async def test_rate_zero_stops_generation_but_flushes_the_buffer(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    fake = FakeDistributor(status=503)
    client, emitter = await start(aiohttp_server, aiohttp_client, fake, rate=1000)
    await eventually(lambda: emitter.buffered >= 20)
    resp = await client.post("/rate", json={"rps": 0})
    assert (await resp.json())["rps"] == 0
    generated = emitter.generated
    fake.status = 202
    await eventually(lambda: emitter.buffered == 0, what="buffer flushed")
    assert emitter.generated == generated
    assert sorted(fake.ids) == sorted(emitter.sent_ids)
    assert len(fake.ids) == generated


@pytest.mark.parametrize("body", [{"rps": -1}, {"rps": "x"}, {"rps": None}, {}, {"rps": 1e9}])
async def test_bad_rates_are_refused(
    aiohttp_server: Any, aiohttp_client: Any, body: dict[str, Any]
) -> None:
    client, emitter = await start(aiohttp_server, aiohttp_client, FakeDistributor(), rate=1)
    resp = await client.post("/rate", json=body)
    assert resp.status == 422
    assert "rps" in (await resp.json())["error"]
    assert emitter.bucket.rate == 1


async def test_refusals_keep_the_packet_and_retry_after_is_honoured(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    fake = FakeDistributor(status=503, retry_after="1")
    client, emitter = await start(aiohttp_server, aiohttp_client, fake, rate=50, concurrency=1)
    await eventually(lambda: emitter.retries >= 1)
    await eventually(lambda: emitter.generated >= 10)
    fake.status = 202
    await client.post("/rate", json={"rps": 0})
    await eventually(lambda: emitter.buffered == 0, timeout=10, what="delivered after refusal")
    assert len(set(fake.ids)) == emitter.generated == emitter.sent_packets
    metrics = await (await client.get("/metrics")).json()
    assert metrics["retries"] >= 1 and "HTTP 503" in metrics["last_error"]


async def test_buffer_is_bounded_and_generation_waits_when_it_is_full(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    fake = FakeDistributor(status=500)
    client, emitter = await start(aiohttp_server, aiohttp_client, fake, rate=5000, buffer=30)
    await eventually(lambda: emitter.stalls >= 1, what="generation stalls on a full buffer")
    assert emitter.buffered == 30 and emitter.generated == 30
    metrics = await (await client.get("/metrics")).json()
    assert (metrics["buffer_capacity"], metrics["stalls"] >= 1) == (30, True)
    fake.status = 202
    await eventually(lambda: len(set(fake.ids)) >= 60, timeout=10, what="sending resumes")


async def test_a_packet_the_distributor_says_is_bad_is_counted_not_retried(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    fake = FakeDistributor(status=422)
    client, emitter = await start(aiohttp_server, aiohttp_client, fake, rate=100)
    await eventually(lambda: emitter.rejected >= 3)
    assert emitter.retries == 0
    metrics = await (await client.get("/metrics")).json()
    assert metrics["rejected"] >= 3 and metrics["sent_packets"] == 0


async def test_seed_metrics_fields(aiohttp_server: Any, aiohttp_client: Any) -> None:
    client, _ = await start(aiohttp_server, aiohttp_client, FakeDistributor(), rate=3)
    metrics = await (await client.get("/metrics")).json()
    assert {"emitter_id", "rps", "paused", "buffer_len"} <= set(metrics)
    assert (metrics["emitter_id"], metrics["rps"], metrics["paused"]) == ("e1", 3, False)


async def test_a_page_from_another_site_cannot_pause_the_emitter(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    client, emitter = await start(aiohttp_server, aiohttp_client, FakeDistributor(), rate=1)
    resp = await client.post(
        "/pause",
        data="x=1",
        headers={"Origin": "http://evil.example", "Content-Type": "text/plain"},
    )
    assert resp.status == 403 and (await resp.json())["code"] == "cross_origin"
    assert emitter.metrics()["paused"] is False
    assert (await client.get("/health", headers={"Origin": "http://evil.example"})).status == 200
    resp = await client.post("/pause")  # the distributor's relay sends no Origin
    assert resp.status == 200 and emitter.metrics()["paused"] is True


def test_the_renewal_interval_is_what_the_distributor_asks() -> None:
    assert renew_from(b'{"id": "e1", "lease": 60, "renew": 20}') == 20.0
    for raw in (b"{}", b'{"renew": 0}', b'{"renew": "soon"}', b"[1]", b"not json"):
        assert renew_from(raw) is None


async def test_a_change_of_state_is_reported_at_once_not_at_the_next_renewal(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    fake = FakeDistributor()
    client, emitter = await start(
        aiohttp_server, aiohttp_client, fake, rate=1, register_interval=3600
    )
    await eventually(lambda: len(fake.registrations) == 1, what="the first registration")
    await client.post("/pause")
    await eventually(lambda: len(fake.registrations) == 2, what="a renewal on pause")
    assert fake.registrations[1]["metrics"]["paused"] is True
    await client.post("/rate", json={"rps": 7})
    await eventually(lambda: len(fake.registrations) == 3, what="a renewal on rate")
    assert fake.registrations[2]["metrics"]["rps"] == 7


async def test_requests_are_spread_over_every_distributor_given(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    one, two = FakeDistributor(), FakeDistributor()
    client, emitter = await start(aiohttp_server, aiohttp_client, one, two, rate=400)
    await eventually(lambda: len(one.ids) >= 40 and len(two.ids) >= 40, what="both used")
    assert not set(one.ids) & set(two.ids)
    body = await (await client.get("/metrics")).json()
    assert [d["up"] for d in body["distributors"]] == [True, True]


@pytest.mark.parametrize("failure", ["503", "refused"])
async def test_a_failing_distributor_is_stepped_around_without_loss_or_reordering(
    aiohttp_server: Any, aiohttp_client: Any, unused_tcp_port: int, failure: str
) -> None:
    """One of two distributors answers 503 (or nothing listens at it): every packet reaches
    the other, once, in the order generated (one request at a time, so order is visible)."""
    good = FakeDistributor()
    bad: FakeDistributor | str = (
        FakeDistributor(status=503) if failure == "503" else f"http://127.0.0.1:{unused_tcp_port}"
    )
    client, emitter = await start(
        aiohttp_server, aiohttp_client, bad, good, rate=500, concurrency=1
    )
    await eventually(lambda: len(good.ids) >= 300, what="packets through the good one")
    await client.post("/rate", json={"rps": 0})  # generate no more; the buffer drains
    await eventually(lambda: emitter.buffered == 0, what="buffer drained")
    assert len(good.ids) == len(set(good.ids)) == emitter.sent_packets == emitter.generated
    # "Sample log message SEQ.I from e1": generated SEQ 1, 2, 3 … arrived 1, 2, 3 …
    seqs = [int(p["messages"][0]["message"].split()[3].split(".")[0]) for p in good.packets]
    assert seqs == list(range(1, emitter.generated + 1))
    body = await (await client.get("/metrics")).json()
    assert body["distributors"][0]["failures"] >= 1 and body["distributors"][1]["up"]


async def test_a_fleet_steps_around_a_failing_distributor(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    good, bad = FakeDistributor(), FakeDistributor(status=503)
    client, app = await serve(
        aiohttp_server, aiohttp_client, bad, good, rate=50, fleet=20, fleet_batch=5
    )
    await eventually(lambda: len(good.ids) >= 300, what="packets through the good one")
    assert len(good.ids) == len(set(good.ids))
    assert bad.requests >= 1  # it was tried, and the packets it refused went to the other
    assert not bad.packets
    members = {p["emitter"] for p in good.packets}
    assert len(members) == 20  # every member's packets got through


@pytest.mark.parametrize("fleet", [0, 3])
async def test_the_control_port_refuses_a_rebound_host_name(
    aiohttp_server: Any, aiohttp_client: Any, fleet: int
) -> None:
    client, _ = await serve(aiohttp_server, aiohttp_client, FakeDistributor(), rate=0, fleet=fleet)
    path = "/pause" if not fleet else "/metrics"
    resp = await client.post(path, headers={"Host": "evil.example:9000"})
    assert resp.status == 421
    assert (await resp.json())["code"] == "host_not_allowed"
    resp = await client.get("/health", headers={"Host": "localhost"})
    assert resp.status == 200


async def test_a_control_call_needs_the_token_the_emitter_registered_with(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    fake = FakeDistributor()
    client, _ = await serve(aiohttp_server, aiohttp_client, fake, rate=0)
    await eventually(lambda: bool(fake.registrations), what="registration")
    assert fake.registrations[-1]["secret"] == CONTROL_TOKEN
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
        resp = await client.post("/pause", headers=headers)
        assert resp.status == 401
        assert "control token" in (await resp.json())["error"]
    resp = await client.get("/metrics", headers={"Authorization": ""})
    assert resp.status == 200 and (await resp.json())["paused"] is False  # reads stay open
