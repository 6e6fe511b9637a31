"""Thousands of analyzers: probes within a budget, small views, paging."""

from __future__ import annotations

import asyncio
from typing import Any

from logdist.config import HealthConfig
from logdist.core.delivery import Delivery
from tests.distributor.conftest import MakeDistributor, service
from tests.support.fakes import eventually, start_analyzer


async def test_probes_stay_within_the_budget_and_the_round_stretches(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    fake, url = await start_analyzer(aiohttp_server)
    analyzers = {f"a{i:02d}": (url, 1.0) for i in range(40)}
    client = await make_distributor(
        analyzers, health=HealthConfig(interval=0.1, timeout=1.0, rise=1, fall=2, max_probes=20)
    )
    d = service(client)
    health = (await (await client.get("/status")).json())["health"]
    assert health["cycle"] == 2.0 and health["stretched"] is True  # 40 / 20 a second
    before, start = len(fake.probes), asyncio.get_running_loop().time()
    await asyncio.sleep(1.0)
    elapsed = asyncio.get_running_loop().time() - start
    # Never more than the budget (a slow machine may probe fewer: no lower bound here).
    assert len(fake.probes) - before <= 20 * elapsed + 2
    await eventually(lambda: d.registry.routable_count == 40, timeout=10, what="all probed up")


async def test_passive_analyzers_cost_no_probe(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    fake, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"p": (url, 1.0, Delivery(health="passive"))})
    await asyncio.sleep(0.3)
    assert fake.probes == []
    assert (await (await client.get("/status")).json())["health"]["probes"] == 0


async def test_a_large_pool_is_summarised_unhealthy_first_and_paged(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    _, good = await start_analyzer(aiohttp_server)
    _, sick = await start_analyzer(aiohttp_server, healthy=False)
    analyzers: dict[str, tuple[Any, ...]] = {f"a{i:03d}": (good, 1.0) for i in range(120)}
    analyzers["a050"] = (good, 30.0)  # the largest share
    analyzers["zz-sick"] = (sick, 1.0)
    client = await make_distributor(analyzers)
    d = service(client)
    await eventually(
        lambda: d.registry.get("zz-sick").health.value == "down", timeout=10, what="sick down"
    )
    await eventually(lambda: d.registry.routable_count == 120, timeout=10, what="the rest up")
    await asyncio.sleep(1.1)  # past the view's one-second cache
    status = await (await client.get("/status")).json()
    summary = status["analyzer_summary"]
    assert summary["total"] == 121 and summary["health"] == {"up": 120, "down": 1, "unknown": 0}
    ids = [a["id"] for a in status["analyzers"]]
    assert ids[0] == "zz-sick" and "a050" in ids and len(ids) <= 16
    page = await (await client.get("/registry?q=a05&limit=5")).json()
    assert [a["id"] for a in page["analyzers"]] == [f"a05{i}" for i in range(5)]
    rest = await (await client.get(f"/registry?q=a05&limit=5&cursor={page['next']}")).json()
    assert [a["id"] for a in rest["analyzers"]] == [f"a05{i}" for i in range(5, 10)]
    assert rest["next"] is None and rest["total"] == 121
    down = await (await client.get("/registry?health=down")).json()
    assert [a["id"] for a in down["analyzers"]] == ["zz-sick"]
    bare = await (await client.get("/registry")).json()
    assert isinstance(bare, list) and len(bare) == 121  # the seed's form below 1,000
    resp = await client.get("/registry?health=fine")
    assert resp.status == 422 and (await resp.json())["detail"] == {"field": "health"}


async def test_a_small_pool_is_listed_whole(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    _, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a1": (url, 1.0), "a2": (url, 1.0)})
    status = await (await client.get("/status")).json()
    assert [a["id"] for a in status["analyzers"]] == ["a1", "a2"]
    assert status["analyzer_summary"]["shown"] == "all"


async def test_pages_follow_an_analyzer_removed_and_another_added(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    _, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a1": (url, 1.0), "a2": (url, 1.0)})
    first = await (await client.get("/registry?limit=10")).json()
    assert [a["id"] for a in first["analyzers"]] == ["a1", "a2"]
    assert (await client.delete("/registry/a1")).status == 200
    resp = await client.post("/registry/add", json={"id": "b1", "url": url})
    assert resp.status == 201
    again = await (await client.get("/registry?limit=10")).json()
    assert [a["id"] for a in again["analyzers"]] == ["a2", "b1"]  # same count, new ids
