"""A fleet of emitters in one process, against a fake distributor (the e2e tests use the real
one)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp.test_utils import TestClient

from logdist.emitter.fleet import Fleet
from logdist.emitter.node import FLEET
from tests.emitter.test_emitter import FakeDistributor, serve
from tests.support.fakes import eventually

Client = TestClient[Any, Any]


async def start_fleet(
    aiohttp_server: Any, aiohttp_client: Any, fake: FakeDistributor, **kwargs: Any
) -> tuple[Client, Fleet]:
    client, app = await serve(aiohttp_server, aiohttp_client, fake, **kwargs)
    return client, app[FLEET]


async def test_every_member_registers_as_itself_and_sends_its_own_packets(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    fake = FakeDistributor()
    client, fleet = await start_fleet(
        aiohttp_server, aiohttp_client, fake, id="f", fleet=50, rate=20
    )
    await eventually(lambda: len(fake.registrations) >= 50, what="50 registrations")
    registered = {r["id"]: r["url"] for r in fake.registrations}
    base = str(client.make_url("")).rstrip("/")
    assert registered == {f"f-{i}": f"{base}/e/f-{i}" for i in range(50)}
    await eventually(lambda: len({p["emitter"] for p in fake.packets}) == 50, what="all send")
    assert (await (await client.get("/metrics")).json())["members"] == 50


async def test_a_member_is_paused_and_re_rated_alone(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    fake = FakeDistributor()
    client, fleet = await start_fleet(
        aiohttp_server, aiohttp_client, fake, id="f", fleet=5, rate=50
    )
    await eventually(lambda: len(fake.packets) > 20, what="packets")
    body = await (await client.post("/e/f-2/pause")).json()
    assert body["paused"] is True and body["emitter_id"] == "f-2"
    await eventually(lambda: fleet.members["f-2"].emitter.in_flight == 0, what="in flight done")
    before = Counter(p["emitter"] for p in fake.packets)
    await eventually(lambda: len(fake.packets) > sum(before.values()) + 40, what="others send")
    after = Counter(p["emitter"] for p in fake.packets)
    assert after["f-2"] == before["f-2"] and after["f-3"] > before["f-3"]
    # The change was reported to the distributor at once.
    assert any(r["id"] == "f-2" and r["metrics"]["paused"] for r in fake.registrations)
    resp = await client.post("/e/f-3/rate", json={"rps": 0})
    assert (await resp.json())["rps"] == 0
    resp = await client.post("/e/f-9/pause")
    assert resp.status == 404 and (await resp.json())["code"] == "unknown_emitter"


async def test_batched_members_travel_together_and_a_refused_batch_is_resent_packet_by_packet(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    fake = FakeDistributor(refuse_emitter="f-3")
    client, fleet = await start_fleet(
        aiohttp_server, aiohttp_client, fake, id="f", fleet=10, rate=50, fleet_batch=20,
        track_ids=1000,
    )  # fmt: skip
    await eventually(lambda: len(fake.packets) > 200, what="packets")
    # Packets that came due together went in one request, from several members each.
    assert max(fake.batches) > 1 and max(fake.batches) <= 20
    assert len({p["emitter"] for p in fake.packets}) == 9
    # The batches holding f-3's packet were refused whole; sent again one by one, only f-3's
    # packets were rejected, and every other member's packets were taken.
    await eventually(lambda: fleet.members["f-3"].emitter.rejected > 0, what="f-3 rejected")
    assert not any(p["emitter"] == "f-3" for p in fake.packets)
    for i in range(10):
        assert (await client.post(f"/e/f-{i}/pause")).status == 200
    await eventually(
        lambda: all(m.emitter.in_flight == 0 for m in fleet.members.values()), what="settled"
    )
    metrics = await (await client.get("/metrics")).json()
    # Every request is counted once, the refused batches and their resends included (how many
    # of those there are depends on timing: on a slow machine every batch may hold f-3's).
    assert metrics["batch"] == 20 and metrics["requests"] == fake.requests
    # Every delivered packet's latency was observed, from generation to the 2xx.
    assert sum(metrics["latency_ms"].values()) == metrics["sent_packets"]
    for i in (0, 5, 9):
        member = fleet.members[f"f-{i}"].emitter
        assert set(member.sent_ids) <= set(fake.ids) and member.rejected == 0
        assert len(member.sent_ids) == member.sent_packets > 0


async def test_a_member_keeps_no_delivered_ids_unless_asked(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    fake = FakeDistributor()
    client, fleet = await start_fleet(
        aiohttp_server, aiohttp_client, fake, id="f", fleet=3, rate=50
    )
    await eventually(lambda: fleet.members["f-1"].emitter.sent_packets > 5, what="packets")
    sent = await (await client.get("/e/f-1/sent?ids=1")).json()
    assert sent["ids"] == [] and sent["ids_truncated"] is True
    assert "--track-ids" in sent["hint"]
    assert all(m.emitter.sent_ids.maxlen == 0 for m in fleet.members.values())
