"""Search across the pool: the distributor asks every storing analyzer (real analyzer apps
with real stores on test servers), merges, dedupes, pages and names who did not answer."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from logdist.analyzer import make_app as analyzer_app
from logdist.analyzer.app import STATE
from logdist.config import AnalyzerConfig
from tests.distributor.conftest import Client, MakeDistributor, all_up
from tests.support.fakes import start_analyzer
from tests.support.serving import FrontServer

LEVELS = ["INFO", "WARN", "ERROR"]


async def storing(aiohttp_client: Any, tmp_path: Path, aid: str) -> tuple[str, web.Application]:
    """A real analyzer with a store, served as `logdist analyzer serve` serves it."""
    app = analyzer_app(AnalyzerConfig(id=aid, store=str(tmp_path / aid)))
    client = await aiohttp_client(FrontServer(app))
    return str(client.make_url("/ingest")), app


def packet(i: int, emitter: str = "e1") -> dict[str, Any]:
    return {
        "packetId": f"p{i:03d}",
        "emitter": emitter,
        "messages": [
            {
                "ts": f"2026-12-02T10:{i // 60:02d}:{i % 60:02d}.{j}00Z",
                "level": LEVELS[(i + j) % 3],
                "service": "api",
                "message": f"token{i}x{j} request done",
            }
            for j in range(2)
        ],
    }


async def send(client: Client, packets: list[dict[str, Any]]) -> None:
    """Five packets a request: a request's packets travel together, to one analyzer."""
    for start in range(0, len(packets), 5):
        body = b"\n".join(orjson.dumps(p) for p in packets[start : start + 5])
        resp = await client.post(
            "/log-packets", data=body, headers={"Content-Type": "application/x-ndjson"}
        )
        assert resp.status == 202, await resp.text()


async def stored(client: Client, n: int) -> bool:
    body = await (await client.get("/logs/histogram")).json()
    return bool(body["total"] == n)


@pytest.fixture
async def pool(
    aiohttp_client: Any, make_distributor: MakeDistributor, tmp_path: Path
) -> tuple[Client, dict[str, web.Application]]:
    return await make_pool(aiohttp_client, make_distributor, tmp_path)


async def make_pool(
    aiohttp_client: Any, make_distributor: MakeDistributor, tmp_path: Path, **cfg: Any
) -> tuple[Client, dict[str, web.Application]]:
    """a1 (weight 2) and a2 (weight 1), both storing, up and known to store."""
    apps: dict[str, web.Application] = {}
    refs: dict[str, tuple[Any, ...]] = {}
    for aid, weight in (("a1", 2.0), ("a2", 1.0)):
        url, apps[aid] = await storing(aiohttp_client, tmp_path, aid)
        refs[aid] = (url, weight)
    client = await make_distributor(refs, **cfg)
    for _ in range(200):
        if await all_up(client):
            break
        await asyncio.sleep(0.02)
    rows = await (await client.get("/registry")).json()
    assert [r["store"] for r in rows] == [True, True]
    return client, apps


async def test_every_message_is_found_once_newest_first_across_pages(
    pool: tuple[Client, dict[str, web.Application]],
) -> None:
    client, _ = pool
    await send(client, [packet(i, f"e{i % 3}") for i in range(150)])
    for _ in range(250):
        if await stored(client, 300):
            break
        await asyncio.sleep(0.02)
    seen: list[tuple[str, int]] = []
    analyzers: set[str] = set()
    cursor = None
    while True:
        url = "/logs/search?limit=70" + (f"&cursor={cursor}" if cursor else "")
        page = await (await client.get(url)).json()
        assert page["partial"] == []
        seen += [(i["packetId"], i["index"]) for i in page["items"]]
        analyzers |= {i["analyzer"] for i in page["items"]}
        cursor = page["next"]
        assert page["cursor"] == cursor  # the key search answers had first, kept for clients
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 300
    assert seen == sorted(seen, reverse=True)  # ts grows with the packet number here
    assert analyzers == {"a1", "a2"}
    # Full text, level and emitter filters; the histogram's counts by level.
    found = await (await client.get("/logs/search?q=token42x1")).json()
    assert [(i["packetId"], i["index"], i["level"]) for i in found["items"]] == [
        ("p042", 1, "WARN")
    ]
    errors = await (await client.get("/logs/search?level=ERROR&emitter=e1&limit=1000")).json()
    expected = [(i, j) for i in range(150) for j in range(2) if (i + j) % 3 == 2 and i % 3 == 1]
    assert len(errors["items"]) == len(expected)
    hist = await (await client.get("/logs/histogram?buckets=3")).json()
    totals: dict[str, int] = {}
    for bucket in hist["buckets"]:
        for level, n in bucket["counts"].items():
            totals[level] = totals.get(level, 0) + n
    assert totals == {"INFO": 100, "WARN": 100, "ERROR": 100} and hist["total"] == 300


async def test_a_message_stored_by_two_analyzers_is_shown_once(
    pool: tuple[Client, dict[str, web.Application]],
) -> None:
    client, apps = pool
    one = orjson.dumps(packet(7))
    for app in apps.values():  # as a redelivery to a second analyzer leaves it
        store = app[STATE].store
        assert store is not None
        await store.submit([("p007", "e1", one)])
    page = await (await client.get("/logs/search")).json()
    assert [(i["packetId"], i["index"]) for i in page["items"]] == [("p007", 1), ("p007", 0)]
    # The histogram counts stored rows: both copies.
    assert (await (await client.get("/logs/histogram")).json())["total"] == 4


async def test_an_analyzer_that_cannot_answer_is_named_in_partial(
    aiohttp_client: Any,
    make_distributor: MakeDistributor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, apps = await make_pool(aiohttp_client, make_distributor, tmp_path, search_timeout=0.3)
    await send(client, [packet(i) for i in range(30)])
    for _ in range(250):
        if await stored(client, 60):
            break
        await asyncio.sleep(0.02)
    store = apps["a2"][STATE].store
    assert store is not None
    slow = store.search

    def stuck(query: Any) -> Any:
        time.sleep(1.0)
        return slow(query)

    monkeypatch.setattr(store, "search", stuck)
    page = await (await client.get("/logs/search?limit=100")).json()
    assert page["partial"] == [{"analyzer": "a2", "error": "no answer within 0.3 s"}]
    assert page["items"] and {i["analyzer"] for i in page["items"]} == {"a1"}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=later", "since"),
        ("level=LOUD", "level"),
        ("q=%22open", "q"),
        ("analyzer=nobody", "analyzer"),
        ("limit=5000", "limit"),
        ("cursor=xyz", "cursor"),
        ("colour=blue", "colour"),
    ],
)
async def test_every_bad_parameter_is_a_422_naming_it(
    pool: tuple[Client, dict[str, web.Application]], query: str, field: str
) -> None:
    client, _ = pool
    for route in ("search", "histogram"):
        resp = await client.get(f"/logs/{route}?{query}")
        assert resp.status == 422
        assert (await resp.json())["detail"] == {"field": field}


async def test_context_shows_one_emitters_messages_around_one_from_every_store(
    pool: tuple[Client, dict[str, web.Application]],
) -> None:
    client, _ = pool
    await send(client, [packet(i, "e1" if i % 2 else "e2") for i in range(40)])
    for _ in range(250):
        if await stored(client, 80):
            break
        await asyncio.sleep(0.02)
    body = await (await client.get("/logs/context?packetId=p021&index=0&before=3&after=2")).json()
    keys = [(i["packetId"], i["index"]) for i in body["items"]]
    assert keys == [("p017", 1), ("p019", 0), ("p019", 1), ("p021", 0), ("p021", 1), ("p023", 0)]
    assert body["anchor"] == 3 and body["partial"] == []
    assert {i["emitter"] for i in body["items"]} == {"e1"}
    assert {i["analyzer"] for i in body["items"]} == {"a1", "a2"}  # both stores held some
    missing = await client.get("/logs/context?packetId=nope&index=0")
    assert missing.status == 404


async def test_an_analyzer_named_that_keeps_no_store_is_said_in_partial(
    aiohttp_client: Any, aiohttp_server: Any, make_distributor: MakeDistributor, tmp_path: Path
) -> None:
    url, _ = await storing(aiohttp_client, tmp_path, "a1")
    _, plain = await start_analyzer(aiohttp_server)  # answers /health without "store"
    client = await make_distributor({"a1": (url, 1.0), "plain": (plain, 1.0)})
    for _ in range(200):
        if await all_up(client):
            break
        await asyncio.sleep(0.02)
    for route in ("search", "histogram"):
        body = await (await client.get(f"/logs/{route}?analyzer=a1,plain")).json()
        assert body["partial"] == [
            {"analyzer": "plain", "error": "keeps no store (its health does not say store: true)"}
        ]
    # Not named, it is not asked and not said: only analyzers known to store are searched.
    assert (await (await client.get("/logs/search")).json())["partial"] == []
