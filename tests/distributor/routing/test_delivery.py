"""Delivery to analyzers as they are: formats, headers, health URLs, passive health, gzip."""

from __future__ import annotations

import asyncio
import gzip
import os
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest

from logdist.core.delivery import Delivery
from logdist.core.registry import Health
from logdist.distributor.storage.state import StateStore
from tests.distributor.conftest import Client, MakeDistributor, service
from tests.distributor.routing.test_forwarding import packets, send
from tests.support.fakes import eventually, start_analyzer

TOKEN = "s3cret-token-4f1c"


async def routable(client: Client, n: int) -> None:
    d = service(client)
    await eventually(lambda: len([a for a in d.registry if a.routable]) == n, what="routable")


def sent_ids(n: int, prefix: str = "p") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


@pytest.mark.parametrize(
    ("fmt", "ctype", "batches"),
    [
        ("ndjson", "application/x-ndjson", True),
        ("json-array", "application/json", True),
        ("json", "application/json", False),
    ],
)
async def test_each_format_frames_exactly_the_packets_sent(
    aiohttp_server: Any, make_distributor: MakeDistributor, fmt: str, ctype: str, batches: bool
) -> None:
    # batch=False: its /health does not say "batch", so only a declared format batches.
    fake, url = await start_analyzer(aiohttp_server, batch=False)
    client = await make_distributor({"x": (url, 1, Delivery(format=fmt))}, forward_batch=40)
    await routable(client, 1)
    body = packets(300, size=2)
    await send(client, body)
    await eventually(lambda: len(fake.received) == 300, what="delivery")
    expected = [orjson.loads(line) for line in body.split(b"\n")]
    assert sorted(fake.received, key=lambda p: p["packetId"]) == sorted(
        expected, key=lambda p: p["packetId"]
    )
    assert {headers["Content-Type"] for headers, _ in fake.raw} == {ctype}
    sizes = [n for _, n in fake.requests]
    if batches:
        assert max(sizes) > 1 and max(sizes) <= 40
    else:
        assert set(sizes) == {1}
    if fmt == "json-array":
        assert all(raw.startswith(b"[{") and raw.endswith(b"}]") for _, raw in fake.raw)
    if fmt == "ndjson":
        # Each packet's bytes as received, one a line.
        lines = [line for _, raw in fake.raw for line in raw.split(b"\n") if line]
        assert sorted(lines) == sorted(body.split(b"\n"))


async def test_headers_go_with_every_forward_and_probe_and_are_never_shown(
    aiohttp_server: Any, make_distributor: MakeDistributor, caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = await start_analyzer(aiohttp_server, token=TOKEN)
    delivery = Delivery("ndjson", (("Authorization", f"Bearer {TOKEN}"),))
    client = await make_distributor({"x": (url, 1, delivery)})
    await routable(client, 1)
    await send(client, packets(50))
    await eventually(lambda: len(fake.received) == 50, what="delivery")
    assert fake.probes and all(p["Authorization"] == f"Bearer {TOKEN}" for p in fake.probes)
    assert all(h["Authorization"] == f"Bearer {TOKEN}" for h, _ in fake.raw)
    shown = [
        await (await client.get(path)).text()
        for path in ("/registry", "/status", "/metrics", "/logs?n=100")
    ]
    assert all(TOKEN not in text for text in shown)
    assert '"Authorization":"***"' in shown[0]
    assert TOKEN not in caplog.text


async def test_gzip_bodies_decode_to_the_same_packets(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    fake, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"x": (url, 1, Delivery("ndjson", compression="gzip"))})
    await routable(client, 1)
    body = packets(2000, size=20)  # big batches are compressed in a thread
    await send(client, body)
    await eventually(lambda: len(fake.received) == 2000, what="delivery")
    assert sorted(fake.ids) == sorted(sent_ids(2000))
    assert {h["Content-Encoding"] for h, _ in fake.raw} == {"gzip"}
    assert sum(int(h["Content-Length"]) for h, _ in fake.raw) < len(body) / 3


async def test_a_health_url_of_its_own_is_probed_instead_of_the_sibling(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    fake, url = await start_analyzer(aiohttp_server, health_path="/_cluster/health")
    health_url = url.replace("/ingest", "/_cluster/health")
    client = await make_distributor(
        {"good": (url, 1, Delivery(health_url=health_url)), "sibling": (url, 1)}
    )
    d = service(client)
    await eventually(lambda: d.registry.get("good").health is Health.UP, what="good up")
    await eventually(lambda: d.registry.get("sibling").health is Health.DOWN, what="no /health")
    assert "health HTTP 404" in (d.registry.get("sibling").last_error or "")


async def test_passive_health_judges_an_analyzer_with_no_health_route_by_its_forwards(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    fake, url = await start_analyzer(aiohttp_server, health_path=None)
    other, url_o = await start_analyzer(aiohttp_server)
    client = await make_distributor(
        {"p": (url, 1, Delivery("ndjson", health="passive")), "o": (url_o, 1)}, run_messages=4
    )
    d = service(client)
    await routable(client, 2)
    await send(client, packets(200, size=1, prefix="a"))
    await eventually(lambda: len(fake.ids) + len(other.ids) == 200, what="delivery")
    assert 60 <= len(fake.ids) <= 140  # it takes its share with no probe at all
    assert fake.probes == []
    assert d.registry.get("p").health is Health.UP
    # It starts failing every forward: down by forwards alone, its packets go to the other.
    fake.status = 500
    sent = 200
    for i in range(30):
        await send(client, packets(10, size=1, prefix=f"b{i}-"))
        sent += 10
        await eventually(lambda: d.dispatcher.unacked == 0, what="all delivered")
        if d.registry.get("p").health is Health.DOWN:
            break
    assert d.registry.get("p").health is Health.DOWN
    assert d.registry.get("p").last_error == "HTTP 500"
    assert len(fake.ids) + len(other.ids) == sent
    # Back to health: a trial after the back-off brings it up, and it takes packets again.
    fake.status = 200
    before = len(fake.ids)
    for i in range(40):
        await send(client, packets(10, size=1, prefix=f"c{i}-"))
        sent += 10
        await eventually(lambda: d.dispatcher.unacked == 0, what="settled")
        if d.registry.get("p").health is Health.UP and len(fake.ids) > before:
            break
        await asyncio.sleep(0.1)
    assert d.registry.get("p").health is Health.UP
    assert len(fake.ids) > before
    assert len(fake.ids) + len(other.ids) == sent


async def test_runtime_config_changes_apply_to_the_next_forward_and_are_shown_masked(
    aiohttp_server: Any, make_distributor: MakeDistributor, tmp_path: Path
) -> None:
    fake, url = await start_analyzer(aiohttp_server, batch=False)
    client = await make_distributor({"x": (url, 1)}, state_dir=str(tmp_path))
    await routable(client, 1)
    resp = await client.post(
        "/analyzer/x/config",
        json={"format": "ndjson", "headers": {"Authorization": f"Bearer {TOKEN}"}},
    )
    assert resp.status == 200, await resp.text()
    row = await resp.json()
    assert (row["format"], row["headers"], row["batch"]) == (
        "ndjson",
        {"Authorization": "***"},
        True,
    )
    await send(client, packets(100, size=1))
    await eventually(lambda: len(fake.received) == 100, what="delivery")
    assert {h["Content-Type"] for h, _ in fake.raw} == {"application/x-ndjson"}
    assert all(h["Authorization"] == f"Bearer {TOKEN}" for h, _ in fake.raw)
    # Merge one header in, drop the other.
    resp = await client.post(
        "/analyzer/x/config",
        json={"add_headers": {"X-Scope": "a"}, "remove_headers": ["authorization"]},
    )
    assert (await resp.json())["headers"] == {"X-Scope": "***"}
    # Kept in the state journal, in clear, readable by its owner only.
    journal = tmp_path / "state.journal"
    last = orjson.loads(journal.read_bytes().splitlines()[-1])
    assert last["analyzer"]["delivery"]["headers"] == {"X-Scope": "a"}
    assert stat.S_IMODE(os.stat(journal).st_mode) == 0o600
    saved = StateStore(tmp_path).load()
    assert saved is not None and dict(saved[0][0].delivery.headers) == {"X-Scope": "a"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"format": "xml"}, "format"),
        ({"headers": {"Bad Name": "x"}}, "headers"),
        ({"add_headers": ["X-A: 1"]}, "headers"),
        ({"health_url": "ftp://h/x"}, "health_url"),
        ({"health": "maybe"}, "health"),
        ({"compression": "zstd"}, "compression"),
        ({"colour": "red"}, "colour"),
        ({}, "format"),
    ],
)
async def test_bad_config_values_are_422_naming_the_field(
    aiohttp_server: Any, make_distributor: MakeDistributor, body: dict[str, Any], field: str
) -> None:
    _, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"x": (url, 1)})
    resp = await client.post("/analyzer/x/config", json=body)
    assert resp.status == 422
    answer = await resp.json()
    assert answer["detail"] == {"field": field} and answer["error"]
    resp = await client.post("/registry/add", json={"id": "y", "url": url, **body})
    if body and field != "colour" and "add_headers" not in body:
        assert resp.status == 422 and (await resp.json())["detail"] == {"field": field}
    assert (await client.post("/analyzer/nope/config", json={"format": "json"})).status == 404


async def test_an_analyzer_added_at_runtime_keeps_its_delivery_across_a_restart(
    aiohttp_server: Any, make_distributor: MakeDistributor, tmp_path: Path
) -> None:
    fake, url = await start_analyzer(aiohttp_server, health_path=None)
    client = await make_distributor({}, state_dir=str(tmp_path))
    resp = await client.post(
        "/registry/add",
        json={
            "id": "n",
            "url": url,
            "format": "json-array",
            "health": "passive",
            "compression": "gzip",
            "headers": {"X-Key": "k"},
        },
    )
    assert resp.status == 201, await resp.text()
    await client.close()
    again = await make_distributor({}, state_dir=str(tmp_path))
    await routable(again, 1)
    await send(again, packets(20))
    await eventually(lambda: len(fake.received) == 20, what="delivery after restart")
    headers = fake.raw[0][0]
    assert (headers["X-Key"], headers["Content-Encoding"]) == ("k", "gzip")
    assert fake.raw[0][1].startswith(b"[")


async def test_a_version_1_state_file_is_still_read(
    aiohttp_server: Any, make_distributor: MakeDistributor, tmp_path: Path
) -> None:
    _, url = await start_analyzer(aiohttp_server)
    (tmp_path / "state.json").write_bytes(
        orjson.dumps(
            {
                "version": 1,
                "analyzers": [{"id": "old", "url": url, "weight": 2.0, "state": "disabled"}],
            }
        )
    )
    client = await make_distributor({}, state_dir=str(tmp_path))
    rows = await (await client.get("/registry")).json()
    assert [(r["id"], r["weight"], r["state"], r["format"]) for r in rows] == [
        ("old", 2.0, "disabled", "auto")
    ]


async def test_a_429_holds_the_analyzer_for_its_retry_after_and_nothing_is_lost(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    busy, url_b = await start_analyzer(
        aiohttp_server, status=429, answer_headers={"Retry-After": "2"}
    )
    other, url_o = await start_analyzer(aiohttp_server)
    client = await make_distributor({"busy": (url_b, 1), "other": (url_o, 1)})
    d = service(client)
    await routable(client, 2)
    await send(client, packets(40, size=1))
    await eventually(lambda: len(other.ids) == 40, what="all go to the other")
    asked = len(busy.raw)
    assert asked >= 1 and d.registry.get("busy").held
    await send(client, packets(40, size=1, prefix="q"))
    await eventually(lambda: len(other.ids) == 80, what="more to the other")
    assert len(busy.raw) == asked  # held: not asked again within its Retry-After
    busy.status = 200
    await eventually(lambda: not d.registry.get("busy").held, timeout=4, what="hold released")


def test_gzip_round_trip_of_pieces() -> None:
    from logdist.distributor.outputs.wire import gzip_pieces

    pieces = [b'{"a":1}', b"\n", b'{"b":2}', b"\n"]
    assert gzip.decompress(gzip_pieces(pieces)) == b"".join(pieces)
