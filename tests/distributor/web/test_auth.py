from __future__ import annotations

from typing import Any

import pytest

from tests.distributor.conftest import MakeDistributor
from tests.support.fakes import start_analyzer

ADMIN = {"Authorization": "Bearer admin-secret"}
INGEST = {"Authorization": "Bearer ingest-secret"}
PACKET = {"messages": [{"message": "x"}]}

ADMIN_ROUTES = [
    ("GET", "/registry", None),
    ("POST", "/registry/add", {"id": "a9", "url": "http://127.0.0.1:1/ingest"}),
    ("DELETE", "/registry/a1", None),
    ("POST", "/analyzer/a1/enable", None),
    ("POST", "/analyzer/a1/disable", None),
    ("POST", "/analyzer/a1/drain", None),
    ("POST", "/analyzer/a1/weight", {"weight": 2}),
    ("GET", "/emitters", None),
    ("POST", "/emitter/e1/pause", None),
    ("POST", "/emitter/e1/resume", None),
    ("POST", "/emitter/e1/rate", {"rps": 1}),
    ("GET", "/emitter/e1/metrics", None),
    ("GET", "/status", None),
    ("GET", "/metrics", None),
    ("GET", "/logs", None),
    ("GET", "/ws/logs", None),
    ("GET", "/ws/metrics", None),
]
INGEST_ROUTES = [
    ("POST", "/log-packet", PACKET),
    ("POST", "/log-packets", [PACKET]),
    ("POST", "/emitters/register", {"id": "e1", "url": "http://127.0.0.1:1"}),
]


@pytest.fixture
async def client(aiohttp_server: Any, make_distributor: MakeDistributor) -> Any:
    _, url = await start_analyzer(aiohttp_server)
    return await make_distributor(
        {"a1": (url, 1)}, admin_token="admin-secret", ingest_token="ingest-secret"
    )


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
async def test_admin_routes_refuse_without_the_admin_token(
    client: Any, method: str, path: str, body: Any
) -> None:
    for headers in (
        None,
        INGEST,
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic admin-secret"},
    ):
        resp = await client.request(method, path, json=body, headers=headers)
        assert resp.status == 401, (path, headers)
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        reply = await resp.json()
        assert reply["code"] == "unauthorized" and "admin token" in reply["error"]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
async def test_admin_routes_work_with_the_admin_token(
    client: Any, method: str, path: str, body: Any
) -> None:
    if path.startswith("/ws/"):
        ws = await client.ws_connect(path, headers=ADMIN)
        await ws.close()
        ws = await client.ws_connect(path + "?token=admin-secret")  # how a browser passes it
        await ws.close()
        return
    resp = await client.request(method, path, json=body, headers=ADMIN)
    assert resp.status != 401
    # Emitter routes answer 404 (none registered): past auth, into the handler.
    assert resp.status in (200, 201, 404), await resp.text()


@pytest.mark.parametrize(("method", "path", "body"), INGEST_ROUTES)
async def test_ingest_routes_take_the_ingest_token_only(
    client: Any, method: str, path: str, body: Any
) -> None:
    for headers in (None, ADMIN):
        resp = await client.request(method, path, json=body, headers=headers)
        assert resp.status == 401 and "ingest token" in (await resp.json())["error"]
    resp = await client.request(method, path, json=body, headers=INGEST)
    assert resp.status in (200, 202)


async def test_health_and_dashboard_are_open(client: Any) -> None:
    assert (await client.get("/health")).status == 200
    page = await client.get("/")
    assert page.status == 200 and "<title>logdist</title>" in await page.text()
    assert (await client.get("/ui/app.js")).status == 200


async def test_without_tokens_everything_is_open(make_distributor: MakeDistributor) -> None:
    client = await make_distributor()
    assert (await client.get("/status")).status == 200
    assert (await client.post("/log-packet", json=PACKET)).status == 202
