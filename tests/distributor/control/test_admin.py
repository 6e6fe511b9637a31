from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from tests.distributor.conftest import MakeDistributor, service
from tests.support.fakes import eventually, start_analyzer

PACKET = {"emitter": "e1", "messages": [{"message": "hi"}]}


async def routable(client: Any) -> set[str]:
    return {a.id for a in service(client).registry if a.routable}


async def test_registry_lists_analyzers_in_the_seed_shape(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    _, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a1": (url, 0.4)})
    rows = await (await client.get("/registry")).json()
    assert isinstance(rows, list)
    assert {k: rows[0][k] for k in ("id", "url", "weight", "enabled")} == {
        "id": "a1",
        "url": url,
        "weight": 0.4,
        "enabled": True,
    }


async def test_added_analyzer_is_probed_and_takes_its_share(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    first, url1 = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a1": (url1, 1)})
    late, url2 = await start_analyzer(aiohttp_server)
    resp = await client.post("/registry/add", json={"id": "a2", "url": url2, "weight": 3})
    assert resp.status == 201
    assert (await resp.json())["id"] == "a2"
    await eventually(lambda: service(client).registry.get("a2").routable, what="a2 up")
    for _ in range(40):
        assert (await client.post("/log-packet", json=PACKET)).status == 202
    await eventually(lambda: len(first.ids) + len(late.ids) == 40)
    assert len(late.ids) == 30


async def test_removed_analyzer_gets_nothing_more(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    keep, url1 = await start_analyzer(aiohttp_server)
    gone, url2 = await start_analyzer(aiohttp_server)
    client = await make_distributor({"keep": (url1, 1), "gone": (url2, 1)})
    await eventually(lambda: len(service(client).registry.target_shares()) == 2)
    resp = await client.delete("/registry/gone")
    assert resp.status == 200 and await resp.json() == {"removed": "gone", "drained": True}
    for _ in range(20):
        await client.post("/log-packet", json=PACKET)
    await eventually(lambda: len(keep.ids) == 20)
    assert gone.ids == []
    assert [r["id"] for r in await (await client.get("/registry")).json()] == ["keep"]


async def test_remove_lets_in_flight_packets_finish_first(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    slow, url = await start_analyzer(aiohttp_server, delay=0.5)
    client = await make_distributor({"slow": (url, 1)})
    await eventually(lambda: service(client).registry.get("slow").routable)
    for _ in range(5):
        await client.post("/log-packet", json=PACKET)
    await eventually(lambda: service(client).registry.get("slow").pending == 5)
    resp = await client.delete("/registry/slow")
    assert await resp.json() == {"removed": "slow", "drained": True}
    assert len(slow.ids) == 5  # answered before the removal returned
    assert service(client).dispatcher.unacked == 0


@pytest.mark.parametrize(
    ("body", "status", "code", "text"),
    [
        ({"url": "http://127.0.0.1:1/ingest"}, 422, "invalid_request", "'id'"),
        ({"id": "x"}, 422, "invalid_request", "'url'"),
        ({"id": "x", "url": "not a url"}, 422, "invalid_request", "http"),
        (
            {"id": "x", "url": "http://127.0.0.1:1/ingest", "weight": -1},
            422,
            "invalid_request",
            "weight",
        ),
        (
            {"id": "x", "url": "http://127.0.0.1:1/ingest", "weight": "1"},
            422,
            "invalid_request",
            "weight",
        ),
        ({"id": "a b", "url": "http://127.0.0.1:1/ingest"}, 422, "invalid_request", "id"),
        (
            {"id": "a1", "url": "http://127.0.0.1:1/ingest"},
            409,
            "analyzer_exists",
            "already exists",
        ),
        ([1, 2], 422, "invalid_request", "JSON object"),
    ],
)
async def test_bad_add_requests_say_why(
    make_distributor: MakeDistributor, body: Any, status: int, code: str, text: str
) -> None:
    client = await make_distributor({"a1": ("http://127.0.0.1:1/ingest", 1)})
    resp = await client.post("/registry/add", json=body)
    assert resp.status == status
    reply = await resp.json()
    assert reply["code"] == code and text in reply["error"]
    assert len(service(client).registry) == 1


async def test_malformed_admin_body_is_400(make_distributor: MakeDistributor) -> None:
    client = await make_distributor()
    resp = await client.post(
        "/registry/add", data=b"{id:", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400 and (await resp.json())["code"] == "malformed_json"
    resp = await client.post(
        "/registry/add", data=b"id=a", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert resp.status == 415


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("DELETE", "/registry/nope", None),
        ("POST", "/analyzer/nope/enable", None),
        ("POST", "/analyzer/nope/disable", None),
        ("POST", "/analyzer/nope/drain", None),
        ("POST", "/analyzer/nope/weight", {"weight": 1}),
    ],
)
async def test_unknown_analyzer_is_404_naming_it(
    make_distributor: MakeDistributor, method: str, path: str, body: Any
) -> None:
    client = await make_distributor({"a1": ("http://127.0.0.1:1/ingest", 1)})
    resp = await client.request(method, path, json=body)
    assert resp.status == 404
    reply = await resp.json()
    assert reply["code"] == "unknown_analyzer" and "'nope'" in reply["error"]
    assert reply["detail"] == {"known": ["a1"]}


async def test_disable_enable_and_drain_change_routing(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    a, url_a = await start_analyzer(aiohttp_server)
    b, url_b = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a": (url_a, 1), "b": (url_b, 1)})
    await eventually(lambda: len(service(client).registry.target_shares()) == 2)
    await eventually(lambda: all(x.routable for x in service(client).registry))
    for action, expected_state in (("disable", "disabled"), ("drain", "draining")):
        resp = await client.post(f"/analyzer/b/{action}")
        assert resp.status == 200
        assert (await resp.json())["state"] == expected_state
        before = len(b.ids)
        for _ in range(10):
            await client.post("/log-packet", json=PACKET)
        await eventually(lambda: service(client).dispatcher.unacked == 0)
        assert len(b.ids) == before
    assert (await (await client.post("/analyzer/b/enable")).json())["enabled"] is True
    for _ in range(10):
        await client.post("/log-packet", json=PACKET)
    await eventually(lambda: service(client).dispatcher.unacked == 0)
    assert len(b.ids) == 5


async def test_weight_change_takes_effect_at_once(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    a, url_a = await start_analyzer(aiohttp_server)
    b, url_b = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a": (url_a, 1), "b": (url_b, 1)})
    await eventually(lambda: all(x.routable for x in service(client).registry))
    resp = await client.post("/analyzer/a/weight", json={"weight": 4})
    assert resp.status == 200 and (await resp.json())["weight"] == 4
    for _ in range(50):
        await client.post("/log-packet", json=PACKET)
    await eventually(lambda: len(a.ids) + len(b.ids) == 50)
    assert (len(a.ids), len(b.ids)) == (40, 10)
    for bad in ({"weight": 0}, {"weight": "x"}, {}):
        resp = await client.post("/analyzer/a/weight", json=bad)
        assert resp.status == 422


async def test_emitter_control_is_relayed_to_registered_emitters(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    seen: list[tuple[str, str, bytes]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, await request.read()))
        if request.path == "/rate":
            return web.json_response(
                {"error": "rps must be a number", "code": "invalid_request"}, status=422
            )
        return web.json_response({"emitter_id": "e1", "paused": request.path == "/pause"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    emitter = await aiohttp_server(app)
    client = await make_distributor()
    resp = await client.post("/emitter/e1/pause")
    assert resp.status == 404 and (await resp.json())["code"] == "unknown_emitter"
    resp = await client.post(
        "/emitters/register", json={"id": "e1", "url": str(emitter.make_url(""))}
    )
    assert resp.status == 200
    resp = await client.post("/emitter/e1/pause")
    assert resp.status == 200 and (await resp.json())["paused"] is True
    resp = await client.post("/emitter/e1/rate", json={"rps": "fast"})
    assert resp.status == 422 and "rps" in (await resp.json())["error"]
    resp = await client.get("/emitter/e1/metrics")
    assert resp.status == 200
    assert [(m, p) for m, p, _ in seen] == [
        ("POST", "/pause"),
        ("POST", "/rate"),
        ("GET", "/metrics"),
    ]
    assert seen[1][2] == b'{"rps":"fast"}'
    listed = await (await client.get("/emitters")).json()
    assert [e["id"] for e in listed] == ["e1"]
    await emitter.close()
    resp = await client.post("/emitter/e1/resume")
    assert resp.status == 502
    assert "emitter e1" in (await resp.json())["error"]


@pytest.mark.parametrize(
    "body",
    [
        {"id": "e1"},
        {"url": "http://127.0.0.1:1"},
        {"id": "e 1", "url": "http://127.0.0.1:1"},
        {"id": "e1", "url": "x"},
    ],
)
async def test_bad_emitter_registration(
    make_distributor: MakeDistributor, body: dict[str, Any]
) -> None:
    client = await make_distributor()
    resp = await client.post("/emitters/register", json=body)
    assert resp.status == 422


async def test_unknown_routes_are_json_404_and_405(make_distributor: MakeDistributor) -> None:
    client = await make_distributor()
    resp = await client.get("/nope")
    assert resp.status == 404 and (await resp.json())["code"] == "not_found"
    resp = await client.get("/log-packet")
    assert resp.status == 405 and "Allow" in resp.headers


async def test_a_registration_whose_control_url_points_elsewhere_is_refused(
    make_distributor: MakeDistributor,
) -> None:
    client = await make_distributor()
    resp = await client.post(
        "/emitters/register", json={"id": "e1", "url": "http://169.254.169.254/latest"}
    )
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert "must point at the address its registration came from (127.0.0.1)" in error
    assert (await (await client.get("/emitters")).json()) == []
    allowed = await make_distributor(emitter_networks=("169.254.0.0/16",))
    resp = await allowed.post(
        "/emitters/register", json={"id": "e1", "url": "http://169.254.169.254/latest"}
    )
    assert resp.status == 200


CROSS_SITE = {"Origin": "http://evil.example"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/analyzer/a1/disable"),
        ("POST", "/analyzer/a1/drain"),
        ("POST", "/registry/add"),
        ("DELETE", "/registry/a1"),
        ("POST", "/emitter/e1/pause"),
        ("POST", "/dead-letters/purge"),
        ("GET", "/status"),
        ("GET", "/ws/metrics"),
    ],
)
async def test_a_page_from_another_site_cannot_drive_admin_routes(
    make_distributor: MakeDistributor, method: str, path: str
) -> None:
    client = await make_distributor({"a1": ("http://127.0.0.1:1/ingest", 1.0)})
    # A plain HTML form: no JSON, no preflight; the browser adds Origin.
    resp = await client.request(
        method,
        path,
        data="x=1",
        headers={**CROSS_SITE, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 403
    body = await resp.json()
    assert body["code"] == "cross_origin" and "http://evil.example" in body["error"]
    assert [a["state"] for a in await (await client.get("/registry")).json()] == ["enabled"]


async def test_same_origin_no_origin_and_allowed_origins_pass(
    make_distributor: MakeDistributor,
) -> None:
    client = await make_distributor({"a1": ("http://127.0.0.1:1/ingest", 1.0)})
    assert client.port is not None
    own = f"http://{client.host}:{client.port}"
    resp = await client.post("/analyzer/a1/disable", headers={"Origin": own})
    assert resp.status == 200
    resp = await client.post("/analyzer/a1/enable")  # ctl and curl send no Origin
    assert resp.status == 200
    for origin in ("null", f"http://{client.host}:{client.port + 1}"):
        resp = await client.post("/analyzer/a1/disable", headers={"Origin": origin})
        assert resp.status == 403, origin
    # Ingest, /health and the dashboard's files answer any origin.
    packet = {"packetId": "p1", "messages": [{"m": 1}]}
    assert (await client.post("/log-packet", json=packet, headers=CROSS_SITE)).status == 202
    for path in ("/health", "/"):
        assert (await client.get(path, headers=CROSS_SITE)).status == 200
    proxied = await make_distributor(
        {"a1": ("http://127.0.0.1:1/ingest", 1.0)}, allow_origins=("https://logs.example",)
    )
    resp = await proxied.post(
        "/analyzer/a1/disable", headers={"Origin": "https://logs.example:443"}
    )
    assert resp.status == 200
