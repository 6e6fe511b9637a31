from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from logdist.formats.packet import RUN_MESSAGES
from tests.distributor.conftest import MakeDistributor, all_up, service
from tests.support.fakes import eventually, start_analyzer
from tests.support.packets import ndjson, packet


def packets(n: int, size: int | None = None, prefix: str = "p") -> bytes:
    return ndjson(
        packet(f"{prefix}{i}", [{"m": j} for j in range(size or 1 + i % 20)]) for i in range(n)
    )


async def send(client: Any, body: bytes) -> None:
    resp = await client.post(
        "/log-packets", data=body, headers={"Content-Type": "application/x-ndjson"}
    )
    assert resp.status == 202, await resp.text()


@pytest.mark.parametrize("run_messages", [RUN_MESSAGES, 128])
async def test_message_shares_follow_weights_within_one_run(
    aiohttp_server: Any, make_distributor: MakeDistributor, run_messages: int
) -> None:
    fakes = {}
    urls = {}
    for aid, w in (("a1", 0.5), ("a2", 0.3), ("a3", 0.2)):
        fakes[aid], url = await start_analyzer(aiohttp_server)
        urls[aid] = (url, w)
    client = await make_distributor(urls, run_messages=run_messages)
    await eventually(lambda: service(client).registry.has_room(), what="analyzers up")
    await eventually(lambda: len([a for a in service(client).registry if a.routable]) == 3)
    await send(client, packets(2000))  # 21,000 messages in one request
    await eventually(lambda: sum(len(f.ids) for f in fakes.values()) == 2000, what="delivery")
    total = sum(f.messages for f in fakes.values())
    for aid, (_, w) in urls.items():
        # Each analyzer is off its weight by less than one run's messages.
        assert abs(fakes[aid].messages - w * total) < run_messages, (aid, fakes[aid].messages)


async def test_batches_go_to_analyzers_that_accept_them_and_single_objects_to_others(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    batcher, url_b = await start_analyzer(aiohttp_server, batch=True)
    seed_style, url_s = await start_analyzer(aiohttp_server, batch=False)
    client = await make_distributor({"b": (url_b, 1), "s": (url_s, 1)}, forward_batch=50)
    await eventually(lambda: len([a for a in service(client).registry if a.routable]) == 2)
    await send(client, packets(400, size=1))
    await eventually(lambda: len(batcher.ids) + len(seed_style.ids) == 400, what="delivery")
    assert {ct for ct, _ in seed_style.requests} == {"application/json"}
    assert {n for _, n in seed_style.requests} == {1}
    assert {ct for ct, _ in batcher.requests} == {"application/x-ndjson"}
    assert max(n for _, n in batcher.requests) > 1
    assert max(n for _, n in batcher.requests) <= 50
    # Format `auto` (the default) followed each one's /health answer.
    rows = {r["id"]: r for r in await (await client.get("/registry")).json()}
    assert (rows["b"]["format"], rows["b"]["batch"]) == ("auto", True)
    assert (rows["s"]["format"], rows["s"]["batch"]) == ("auto", False)


async def test_failed_forwards_are_retried_elsewhere_and_the_failing_analyzer_goes_down(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    good, url_g = await start_analyzer(aiohttp_server)
    bad, url_b = await start_analyzer(aiohttp_server, status=500)
    client = await make_distributor({"good": (url_g, 1), "bad": (url_b, 1)})
    await eventually(lambda: len([a for a in service(client).registry if a.routable]) == 2)
    for i in range(30):
        await send(client, packets(10, prefix=f"r{i}-"))
        await asyncio.sleep(0.01)
    await eventually(lambda: len(good.ids) == 300, what="all delivered to the good one")
    d = service(client)
    # Its /health passes, so it flaps: down after `fall` failed forwards, up on the next probe.
    assert d.registry.get("bad").downs >= 1
    assert d.counters.retries >= 1 and d.counters.forward_failures >= 1
    await eventually(lambda: d.dispatcher.unacked == 0, what="all acknowledged")


async def test_slow_analyzer_does_not_stall_the_others(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    fast, url_f = await start_analyzer(aiohttp_server)
    slow, url_s = await start_analyzer(aiohttp_server, delay=5.0)
    client = await make_distributor(
        {"fast": (url_f, 1), "slow": (url_s, 1)},
        max_pending=20,
        forward_timeout=20,
        run_messages=10,
    )
    d = service(client)
    await eventually(lambda: len([a for a in d.registry if a.routable]) == 2)
    await send(client, packets(1000, size=1))
    # The slow one fills up and settles nothing: routing waits for it only `stall_after`
    # seconds, then passes it over and everything else reaches the fast one.
    slow_row = d.registry.get("slow")
    await eventually(lambda: d.registry.full(slow_row), what="slow analyzer full")
    held = slow_row.pending
    assert held <= 20 + 10  # overshot by at most the run that filled it
    await eventually(lambda: len(fast.ids) == 1000 - held, timeout=4, what="fast analyzer served")
    assert slow_row.stalled and slow.ids == []
    await eventually(lambda: len(slow.ids) == held, timeout=10, what="slow analyzer finishes")
    await eventually(lambda: not slow_row.stalled, what="a settled request ends the stall")


async def test_shares_hold_while_every_analyzer_is_busy(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    # Both answer, slowly: a full analyzer keeps its turn, so the 3:1 share holds to within
    # one run of 8 packets (passing it over would hand much of its share to the other).
    heavy, url_h = await start_analyzer(aiohttp_server, delay=0.05)
    light, url_l = await start_analyzer(aiohttp_server, delay=0.05)
    client = await make_distributor(
        {"heavy": (url_h, 3), "light": (url_l, 1)}, max_pending=8, max_requests=1, forward_batch=8
    )
    d = service(client)
    await eventually(lambda: len([a for a in d.registry if a.routable]) == 2)
    await send(client, packets(400, size=1))
    await eventually(lambda: len(heavy.ids) + len(light.ids) == 400, timeout=10, what="delivery")
    assert abs(len(heavy.ids) - 300) <= 8, (len(heavy.ids), len(light.ids))


async def test_queued_packets_wait_for_any_analyzer_not_a_dead_one(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    # Late binding: nothing is assigned while nothing is up; the first to come up takes all.
    dead, url_d = await start_analyzer(aiohttp_server, healthy=False)
    late, url_l = await start_analyzer(aiohttp_server, healthy=False)
    client = await make_distributor({"dead": (url_d, 1), "late": (url_l, 1)})
    await send(client, packets(100))
    await asyncio.sleep(0.2)
    assert service(client).dispatcher.queued == 100
    late.healthy = True
    await eventually(lambda: len(late.ids) == 100, what="late analyzer takes the queue")
    assert dead.ids == []


async def test_packets_waiting_for_an_analyzer_that_dies_move_to_the_others(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    steady, url_s = await start_analyzer(aiohttp_server)
    doomed_app = web.Application()
    hits = 0
    release = asyncio.Event()

    async def accept_then_hang(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        await release.wait()
        return web.json_response({}, status=500)

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "batch": False})

    doomed_app.router.add_post("/ingest", accept_then_hang)
    doomed_app.router.add_get("/health", ok)
    doomed = await aiohttp_server(doomed_app)
    client = await make_distributor(
        {"steady": (url_s, 1), "doomed": (str(doomed.make_url("/ingest")), 1)},
        forward_timeout=0.5,
        max_requests=2,
    )
    await eventually(lambda: len([a for a in service(client).registry if a.routable]) == 2)
    await send(client, packets(200))
    await eventually(lambda: len(set(steady.ids)) == 200, timeout=20, what="all delivered")
    assert hits >= 1
    # The last answer may still be on its way back when the analyzer has counted the ids.
    await eventually(lambda: service(client).dispatcher.unacked == 0, what="all acknowledged")
    release.set()


async def test_health_endpoint_and_status(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    fake, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a1": (url, 1)})
    await eventually(lambda: all(a.routable for a in service(client).registry))
    assert await all_up(client)
    await send(client, packets(10, size=2))
    await eventually(lambda: len(fake.ids) == 10)
    status = await (await client.get("/status")).json()
    assert status["queue"]["capacity"] == 10_000
    assert status["counters"]["delivered_messages"] == 20
    row = status["analyzers"][0]
    assert (row["id"], row["health"], row["delivered_packets"], row["actual_share"]) == (
        "a1",
        "up",
        10,
        1.0,
    )
    # Forwarding requests it took (batches of several packets count once).
    assert row["requests"] == len(fake.requests)
    assert (await (await client.get("/health")).json()) == {"status": "ok"}
