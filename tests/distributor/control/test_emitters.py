"""The emitter directory: leases, expiry, and views that stay small for a fleet."""

from __future__ import annotations

from typing import Any

import pytest

from logdist.distributor.control.emitters import EmitterDirectory
from logdist.distributor.routing.shares import Shares
from logdist.errors import InvalidRequest, UnknownEmitter
from logdist.formats.packet import Packet
from tests.distributor.conftest import MakeDistributor, service
from tests.support.clock import FakeClock


def directory(clock: FakeClock, **kwargs: Any) -> EmitterDirectory:
    return EmitterDirectory(clock, lease=60.0, forget_after=600.0, **kwargs)


def register(d: EmitterDirectory, eid: str, **metrics: Any) -> None:
    d.register(eid, "http://127.0.0.1:7000", {"rps": 1, "buffer_len": 0, **metrics}, "127.0.0.1")


def test_a_lease_lapses_to_gone_then_the_emitter_is_forgotten() -> None:
    clock = FakeClock()
    d = directory(clock)
    register(d, "e1")
    register(d, "e2")
    clock.advance(59)
    register(d, "e2")  # renewed
    clock.advance(2)
    assert d.get("e1").state(clock(), d.lease) == "gone"
    assert d.get("e2").state(clock(), d.lease) == "active"
    assert d.sweep() == 0  # gone, still shown
    clock.advance(600)
    assert d.sweep() == 1
    with pytest.raises(UnknownEmitter, match="forgotten"):
        d.get("e1")
    assert d.summary()["forgotten"] == 1 and [e.id for e in d] == ["e2"]


def test_packets_renew_the_lease_of_their_emitter_and_are_counted() -> None:
    clock = FakeClock()
    d = directory(clock)
    register(d, "e1")
    clock.advance(50)
    d.saw([Packet("p1", "e1", 3, b"{}"), Packet("p2", "stranger", 1, b"{}")])
    clock.advance(50)  # 100 s after registering, 50 after its last packet
    info = d.get("e1")
    assert info.state(clock(), d.lease) == "active"
    assert (info.received_packets, info.received_messages) == (1, 3)
    with pytest.raises(UnknownEmitter):
        d.get("stranger")  # a packet does not register anyone


def test_a_run_of_packets_from_several_emitters_renews_each_ones_lease() -> None:
    clock = FakeClock()
    d = directory(clock)
    register(d, "f-0")
    register(d, "f-1")
    clock.advance(50)
    run = Packet("p1", None, 5, b"{}\n{}\n{}", count=3, ids=["p1", "p2", "p3"], counts=[1, 2, 2])
    run.emitters = ["f-0", "f-1", "f-1"]
    d.saw([run])
    clock.advance(50)
    assert [d.get(e).state(clock(), d.lease) for e in ("f-0", "f-1")] == ["active", "active"]
    assert [(d.get(e).received_packets, d.get(e).received_messages) for e in ("f-0", "f-1")] == [
        (1, 1),
        (2, 4),
    ]
    assert d.summary()["received_packets"] == 3


def test_the_summary_follows_every_change_without_rescanning_a_steady_fleet() -> None:
    clock = FakeClock()
    d = directory(clock)
    for i in range(3):
        register(d, f"e{i}")
    assert (d.summary()["active"], d.summary()["paused"]) == (3, 0)
    d.reported(d.get("e1"), {"rps": 1, "buffer_len": 0, "paused": True})  # a relayed pause
    assert (d.summary()["active"], d.summary()["paused"]) == (2, 1)
    for _ in range(5):  # packets keep e0 and e1 alive; e2 falls silent
        clock.advance(20)
        d.saw([Packet("a", "e0", 1, b"{}"), Packet("b", "e1", 1, b"{}")])
        d.sweep()  # the sweeper settles what the packets said every few seconds
        d.summary()
    assert (d.summary()["active"], d.summary()["gone"]) == (1, 1)
    clock.advance(61)
    assert d.summary()["gone"] == 3
    d.saw([Packet("c", "e2", 1, b"{}")])  # back from gone
    d.sweep()
    assert (d.summary()["active"], d.summary()["gone"]) == (1, 2)
    assert d.summary()["received_packets"] == 11


def test_the_summary_counts_states_and_names_the_top_few() -> None:
    clock = FakeClock()
    d = directory(clock)
    for i in range(30):
        register(d, f"e{i:02d}", rps=i, buffer_len=100 - i, paused=i % 10 == 0)
    clock.advance(1.5)
    s = d.summary()
    assert (s["total"], s["active"], s["paused"], s["gone"]) == (30, 27, 3, 0)
    assert s["rps"] == sum(i for i in range(30) if i % 10)
    assert [t["id"] for t in s["top_by_rate"]] == ["e29", "e28", "e27", "e26", "e25"]
    assert [t["id"] for t in s["top_by_buffer"]][:2] == ["e00", "e01"]
    assert d.status_rows() == []  # a fleet: /status carries the summary, not every row
    small = directory(clock)
    register(small, "only")
    assert [r["id"] for r in small.status_rows()] == ["only"]


def test_pages_follow_the_cursor_and_filter() -> None:
    clock = FakeClock()
    d = directory(clock)
    for i in range(25):
        register(d, f"fleet-{i:03d}", paused=i < 5)
    seen: list[str] = []
    cursor = None
    while True:
        page = d.page(limit=10, cursor=cursor)
        seen += [r["id"] for r in page["emitters"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == sorted(f"fleet-{i:03d}" for i in range(25))
    assert [r["id"] for r in d.page(q="-01")["emitters"]] == [f"fleet-01{i}" for i in range(10)]
    assert len(d.page(state="paused")["emitters"]) == 5
    assert d.page(state="paused", limit=5)["next"] is None
    cases: list[tuple[dict[str, Any], str]] = [
        ({"state": "sleeping"}, "state"),
        ({"limit": 0}, "limit"),
        ({"limit": 5000}, "limit"),
        ({"cursor": "%%%"}, "cursor"),
    ]
    for kwargs, field in cases:
        with pytest.raises(InvalidRequest) as err:
            d.page(**kwargs)
        assert err.value.detail == {"field": field}


def test_pages_sorted_by_throttled_follow_the_cursor() -> None:
    clock = FakeClock()
    d = directory(clock)
    d.shares = Shares(lambda: 100, 0.5, retry_after=1, now=clock)
    for i in range(25):
        register(d, f"e{i:02d}")
    for i in range(10):
        d.shares.throttled[f"e{i:02d}"] = 1 + i % 4  # e03, e07: 4; e02, e06: 3; ...
    seen: list[tuple[str, int]] = []
    cursor = None
    while True:
        page = d.page(limit=7, cursor=cursor, sort="throttled")
        seen += [(r["id"], r["throttled"]) for r in page["emitters"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen[:4] == [("e03", 4), ("e07", 4), ("e02", 3), ("e06", 3)]
    assert sorted(seen) == sorted((f"e{i:02d}", 1 + i % 4 if i < 10 else 0) for i in range(25))
    assert [t for _, t in seen] == sorted((t for _, t in seen), reverse=True)
    with pytest.raises(InvalidRequest) as err:
        d.page(sort="loudest")
    assert err.value.detail == {"field": "sort"}
    id_cursor = d.page(limit=3)["next"]
    with pytest.raises(InvalidRequest):  # a cursor of the other order
        d.page(limit=3, cursor=id_cursor, sort="throttled")


async def test_registration_answers_the_lease_and_views_page(
    make_distributor: MakeDistributor,
) -> None:
    client = await make_distributor(emitter_lease=30.0)
    for i in range(25):
        resp = await client.post(
            "/emitters/register",
            json={"id": f"e{i:02d}", "url": "http://127.0.0.1:7000", "metrics": {"rps": 2}},
        )
        assert resp.status == 200
        assert (await resp.json())["renew"] == 10.0
    bare = await (await client.get("/emitters")).json()
    assert isinstance(bare, list) and len(bare) == 25  # the seed's form, for a small pool
    page = await (await client.get("/emitters?limit=10&q=e1")).json()
    assert [e["id"] for e in page["emitters"]] == [f"e1{i}" for i in range(10)]
    assert page["total"] == 25 and page["next"] is None
    status = await (await client.get("/status")).json()
    assert status["emitters"] == []
    assert status["emitter_summary"]["total"] == 25
    resp = await client.get("/emitters?limit=many")
    assert resp.status == 422 and "limit" in (await resp.json())["error"]


async def test_a_bare_list_past_a_thousand_links_to_the_rest(
    make_distributor: MakeDistributor,
) -> None:
    client = await make_distributor()
    d = service(client)
    for i in range(1001):
        d.emitters.register(f"e{i:04d}", "http://127.0.0.1:7000", None, "127.0.0.1")
    resp = await client.get("/emitters")
    rows = await resp.json()
    assert len(rows) == 1000 and rows[-1]["id"] == "e0999"
    assert resp.headers["X-Total-Count"] == "1001"
    link = resp.headers["Link"]
    assert link.startswith("</emitters?limit=1000&cursor=") and link.endswith('rel="next"')
    rest = await (await client.get(link[1 : link.index(">")])).json()
    assert [e["id"] for e in rest["emitters"]] == ["e1000"]
