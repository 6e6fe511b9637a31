"""Data an analyzer refuses is not a dead analyzer: split batches, dead letters, replay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from logdist.core.delivery import Delivery
from tests.distributor.conftest import Client, MakeDistributor, service
from tests.distributor.routing.test_forwarding import send
from tests.support.fakes import FakeAnalyzer, eventually, start_analyzer

POISON = b"poison"
JSON = {"Content-Type": "application/json"}


def body(ids: list[str]) -> bytes:
    return b"\n".join(
        orjson.dumps(
            {
                "packetId": pid,
                "emitter": "e1",
                "messages": [{"message": "poison" if pid.startswith("bad") else "fine"}],
            }
        )
        for pid in ids
    )


async def three_refusers(
    aiohttp_server: Any, make_distributor: MakeDistributor, fmt: str = "ndjson", **cfg: Any
) -> tuple[Client, dict[str, FakeAnalyzer]]:
    fakes: dict[str, FakeAnalyzer] = {}
    spec: dict[str, tuple[Any, ...]] = {}
    for aid in ("a1", "a2", "a3"):
        fakes[aid], url = await start_analyzer(aiohttp_server, refuse=POISON)
        spec[aid] = (url, 1, Delivery(format=fmt))
    client = await make_distributor(spec, **cfg)
    d = service(client)
    await eventually(lambda: len([a for a in d.registry if a.routable]) == 3, what="all up")
    return client, fakes


def delivered(fakes: dict[str, FakeAnalyzer]) -> list[str]:
    return sorted(pid for f in fakes.values() for pid in f.ids)


@pytest.mark.parametrize("fmt", ["ndjson", "json-array", "json"])
async def test_a_refused_packet_becomes_a_dead_letter_and_the_analyzers_stay_up(
    aiohttp_server: Any, make_distributor: MakeDistributor, fmt: str
) -> None:
    client, fakes = await three_refusers(aiohttp_server, make_distributor, fmt)
    d = service(client)
    ids = [f"good{i}" for i in range(10)] + ["bad0"] + [f"good{i}" for i in range(10, 20)]
    await send(client, body(ids))
    await eventually(lambda: d.dispatcher.unacked == 0, what="settled")
    assert delivered(fakes) == sorted(i for i in ids if i != "bad0")
    # Each analyzer refused it once; none was marked down and all keep their shares.
    assert all(a.downs == 0 and a.routable for a in d.registry)
    status = await (await client.get("/status")).json()
    assert status["dead_letters"]["count"] == 1
    assert status["counters"]["refused"] == 3 and status["counters"]["dead_letters"] == 1
    letters = await (await client.get("/dead-letters")).json()
    (letter,) = letters["letters"]
    assert letter["id"] == "bad0" and letter["analyzers"] == ["a1", "a2", "a3"]
    assert letter["last_status"] == 400 and "mapping conflict" in letter["last_answer"]
    shown = await (await client.get("/dead-letters/bad0")).json()
    assert shown["packet"]["messages"] == [{"message": "poison"}]
    assert [r["status"] for r in shown["refusals"]] == [400, 400, 400]
    metrics = await (await client.get("/metrics")).text()
    assert 'logdist_dead_letters_total{analyzer="' in metrics
    assert "logdist_refused_packets_total" in metrics


async def test_a_refused_batch_is_split_and_the_rest_of_it_delivered(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    client, fakes = await three_refusers(aiohttp_server, make_distributor)
    d = service(client)
    ids = [f"good{i}" for i in range(500)]
    for at in (17, 250, 499):
        ids[at] = f"bad{at}"
    await send(client, body(ids))  # one run of 500 packets: one batch
    await eventually(lambda: d.dispatcher.unacked == 0, what="settled")
    assert delivered(fakes) == sorted(i for i in ids if i.startswith("good"))
    assert sorted(d.dead_letters.letters) == ["bad17", "bad250", "bad499"]
    assert sum(c.splits for c in d.counters.analyzers.values()) >= 3
    assert all(a.downs == 0 for a in d.registry)


async def test_max_refusals_and_fewer_eligible_analyzers_end_the_tries_sooner(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    client, fakes = await three_refusers(aiohttp_server, make_distributor, max_refusals=2)
    d = service(client)
    await send(client, body(["bad1"]))
    await eventually(lambda: "bad1" in d.dead_letters.letters, what="dead letter")
    assert sum(f.refused for f in fakes.values()) == 2
    # With one analyzer left enabled, its refusal is enough.
    for aid in ("a2", "a3"):
        assert (await client.post(f"/analyzer/{aid}/disable")).status == 200
    await send(client, body(["bad2"]))
    await eventually(lambda: "bad2" in d.dead_letters.letters, what="dead letter")
    assert [r.analyzer for r in d.dead_letters.letters["bad2"].refusals] == ["a1"]


async def test_replay_delivers_dead_letters_once_the_analyzers_accept_them(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    client, fakes = await three_refusers(aiohttp_server, make_distributor)
    d = service(client)
    await send(client, body(["bad1", "bad2", "bad3", "good1"]))
    await eventually(lambda: len(d.dead_letters.letters) == 3, what="dead letters")
    for f in fakes.values():
        f.refuse = None  # the schema is fixed
    resp = await client.post("/dead-letters/replay", json={"ids": ["bad2"]})
    assert (await resp.json())["replayed"] == 1
    await eventually(lambda: "bad2" in delivered(fakes), what="bad2 delivered")
    resp = await client.post("/dead-letters/replay")
    answer = await resp.json()
    assert (answer["replayed"], answer["left"]) == (2, 0)
    await eventually(lambda: delivered(fakes) == ["bad1", "bad2", "bad3", "good1"], what="all")
    await eventually(lambda: d.dispatcher.unacked == 0, what="settled")
    assert d.counters.received_packets == 4  # a replay is not counted as received again


async def test_purge_and_unknown_ids(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    client, _ = await three_refusers(aiohttp_server, make_distributor)
    d = service(client)
    await send(client, body(["bad1", "bad2"]))
    await eventually(lambda: len(d.dead_letters.letters) == 2, what="dead letters")
    for path in ("/dead-letters/replay", "/dead-letters/purge"):
        resp = await client.post(path, json={"ids": ["nope"]})
        assert resp.status == 404 and (await resp.json())["code"] == "unknown_dead_letter"
        resp = await client.post(path, json={"ids": "bad1"})
        assert resp.status == 422
    assert (await client.get("/dead-letters/nope")).status == 404
    answer = await (await client.post("/dead-letters/purge", json={"ids": ["bad1"]})).json()
    assert (answer["purged"], answer["left"]) == (1, 1)
    answer = await (await client.post("/dead-letters/purge")).json()
    assert (answer["purged"], answer["left"]) == (1, 0)


async def test_dead_letters_are_kept_on_disk_beside_the_spool_and_survive_a_restart(
    aiohttp_server: Any, make_distributor: MakeDistributor, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    client, fakes = await three_refusers(aiohttp_server, make_distributor, spool_dir=str(spool))
    d = service(client)
    await send(client, body(["bad1", "good1"]))
    await eventually(lambda: "bad1" in d.dead_letters.letters, what="dead letter")
    await eventually(lambda: d.dispatcher.unacked == 0, what="settled")
    path = spool / "dead-letters" / "dead-letters.ndjson"
    record = orjson.loads(path.read_bytes())
    assert record["id"] == "bad1" and record["packet"]["packetId"] == "bad1"
    await client.close()
    # The spool acknowledged it: a restart replays nothing, and the dead letter is still there.
    again = await make_distributor(
        {aid: (f"http://127.0.0.1:9/{aid}", 1) for aid in fakes}, spool_dir=str(spool)
    )
    d2 = service(again)
    assert d2.dispatcher.unacked == 0
    assert list(d2.dead_letters.letters) == ["bad1"]


async def test_full_dead_letters_pause_ingest_until_purged(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    client, _ = await three_refusers(aiohttp_server, make_distributor, dead_letter_max_bytes=100)
    d = service(client)
    await send(client, body(["bad1", "bad2"]))
    await eventually(lambda: d.dead_letters.full, what="store full")
    resp = await client.post("/log-packet", data=body(["good1"]), headers=JSON)
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    answer = await resp.json()
    assert answer["code"] == "dead_letters_full" and "ctl dead-letters" in answer["error"]
    await client.post("/dead-letters/purge")
    resp = await client.post("/log-packet", data=body(["good1"]), headers=JSON)
    assert resp.status == 202


async def test_a_rebound_host_name_is_refused_on_every_route(
    make_distributor: MakeDistributor,
) -> None:
    # What a browser sends after a page made evil.example resolve to 127.0.0.1.
    client = await make_distributor(allowed_hosts=("logs.example",))
    hostile = {"Host": "evil.example:8080", "Origin": "http://evil.example:8080"}
    for method, path in (("GET", "/registry"), ("GET", "/status"), ("POST", "/log-packets")):
        resp = await client.request(method, path, headers=hostile, data=b"{}")
        assert resp.status == 421, path
        body = await resp.json()
        assert body["code"] == "host_not_allowed" and "--allowed-host" in body["error"]
    for host in ("localhost", "127.0.0.1:1234", "logs.example:443"):
        resp = await client.get("/registry", headers={"Host": host})
        assert resp.status == 200, host


async def test_the_read_token_reads_and_changes_nothing(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    _, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a1": (url, 1)}, admin_token="adm", read_token="rd-only")
    read, admin = {"Authorization": "Bearer rd-only"}, {"Authorization": "Bearer adm"}
    for path in ("/registry", "/status", "/metrics", "/dead-letters"):
        assert (await client.get(path, headers=read)).status == 200, path
    resp = await client.post("/analyzer/a1/disable", headers=read)
    assert resp.status == 403 and (await resp.json())["code"] == "read_only"
    assert (await (await client.get("/access", headers=read)).json())["role"] == "read"
    assert (await (await client.get("/access", headers=admin)).json())["role"] == "admin"
    assert (await client.get("/registry")).status == 401
    assert (await client.post("/analyzer/a1/disable", headers=admin)).status == 200
