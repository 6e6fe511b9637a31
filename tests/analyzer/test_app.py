from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from logdist.analyzer import make_app
from logdist.analyzer.app import STATE
from logdist.config import AnalyzerConfig
from logdist.net import server
from logdist.net.web import NDJSON
from tests.support.packets import packet
from tests.support.serving import FrontServer, read_response

Client = TestClient[Any, Any]
Serve = Callable[[web.Application], Awaitable[Client]]


@pytest.fixture(params=["front door", "aiohttp"])
def serve(request: pytest.FixtureRequest, aiohttp_client: Any) -> Serve:
    """Serve the app as `logdist analyzer serve` does (/ingest on the lean front door), or
    with aiohttp alone (the route a connection handed to aiohttp takes): same answers."""

    async def start(app: web.Application) -> Client:
        server = FrontServer(app) if request.param == "front door" else TestServer(app)
        c: Client = await aiohttp_client(server)
        return c

    return start


@pytest.fixture(params=["counting", "storing"])
async def client(serve: Serve, tmp_path: Path, request: pytest.FixtureRequest) -> Client:
    """An analyzer that counts, or one that also keeps a store (--store): the same answers,
    given only after the store committed."""
    store = str(tmp_path / "store") if request.param == "storing" else None
    cfg = AnalyzerConfig(
        output=str(tmp_path / "out.ndjson"),
        dedupe_window=1000,
        max_body_bytes=10_000,
        store=store,
    )
    return await serve(make_app(cfg))


async def test_single_packet_is_counted_once_even_when_sent_twice(client: Client) -> None:
    for expected_new in (1, 0):
        resp = await client.post("/ingest", json=packet("p1", 3))
        assert resp.status == 200
        assert await resp.json() == {
            "accepted": 1,
            "new": expected_new,
            "duplicates": 1 - expected_new,
        }
    stats = await (await client.get("/stats?ids=1")).json()
    assert (stats["packets"], stats["messages"], stats["duplicates"]) == (1, 3, 1)
    assert stats["emitters"] == {"e1": {"packets": 1, "messages": 3}}
    assert stats["ids"] == ["p1"] and stats["ids_truncated"] is False


async def test_ndjson_and_array_batches(client: Client) -> None:
    nd = b"\n".join(orjson.dumps(packet(f"n{i}", 2, "e2")) for i in range(3))
    resp = await client.post("/ingest", data=nd, headers={"Content-Type": "application/x-ndjson"})
    assert (await resp.json())["new"] == 3
    resp = await client.post("/ingest", json=[packet("n0"), packet("x1")])
    assert await resp.json() == {"accepted": 2, "new": 1, "duplicates": 1}
    stats = await (await client.get("/stats")).json()
    assert stats["emitters"] == {
        "e2": {"packets": 3, "messages": 6},
        "e1": {"packets": 1, "messages": 1},
    }
    assert "ids" not in stats


async def test_a_line_torn_by_a_kill_is_ended_before_the_next_run_writes(
    serve: Serve, tmp_path: Path
) -> None:
    out = tmp_path / "torn.ndjson"
    whole = orjson.dumps(packet("a"))
    out.write_bytes(whole + b"\n" + whole[:20])  # killed in the middle of the second line
    client = await serve(make_app(AnalyzerConfig(output=str(out))))
    await client.post("/ingest", json=packet("b"))
    lines = out.read_bytes().splitlines()
    assert lines[:2] == [whole, whole[:20]]
    assert [orjson.loads(line)["packetId"] for line in lines[2:]] == ["b"]


async def test_output_file_holds_each_new_packet_once(client: Client, tmp_path: Path) -> None:
    for pid in ("a", "b", "a"):
        await client.post("/ingest", json=packet(pid))
    lines = (tmp_path / "out.ndjson").read_bytes().splitlines()
    assert [orjson.loads(line)["packetId"] for line in lines] == ["a", "b"]


@pytest.mark.parametrize("crlf", [False, True])
async def test_ndjson_batch_with_repeats_and_several_emitters(
    client: Client, tmp_path: Path, crlf: bool
) -> None:
    sep = b"\r\n" if crlf else b"\n"  # CRLF takes the line-by-line way: same answer
    first = sep.join(orjson.dumps(packet(f"p{i}", i + 1, f"e{i % 2}")) for i in range(4))
    await client.post("/ingest", data=first, headers={"Content-Type": "application/x-ndjson"})
    again = sep.join(orjson.dumps(packet(f"p{i}", i + 1, f"e{i % 2}")) for i in (2, 3, 4))
    resp = await client.post(
        "/ingest", data=again, headers={"Content-Type": "application/x-ndjson"}
    )
    assert await resp.json() == {"accepted": 3, "new": 1, "duplicates": 2}
    stats = await (await client.get("/stats")).json()
    assert (stats["packets"], stats["messages"], stats["duplicates"]) == (5, 15, 2)
    assert stats["emitters"] == {
        "e0": {"packets": 3, "messages": 1 + 3 + 5},
        "e1": {"packets": 2, "messages": 2 + 4},
    }
    lines = (tmp_path / "out.ndjson").read_bytes().splitlines()
    assert [orjson.loads(line)["packetId"] for line in lines] == ["p0", "p1", "p2", "p3", "p4"]


async def test_without_an_output_file_batches_are_counted_the_same(serve: Serve) -> None:
    # No output file: the analyzer reads batches without keeping each packet's line.
    client = await serve(make_app(AnalyzerConfig(dedupe_window=1000)))
    first = b"\n".join(orjson.dumps(packet(f"p{i}", i + 1, f"e{i % 2}")) for i in range(4))
    ctype = {"Content-Type": "application/x-ndjson"}
    await client.post("/ingest", data=first, headers=ctype)
    again = b"\n".join(orjson.dumps(packet(f"p{i}", i + 1, f"e{i % 2}")) for i in (2, 3, 4))
    resp = await client.post("/ingest", data=again, headers=ctype)
    assert await resp.json() == {"accepted": 3, "new": 1, "duplicates": 2}
    bad = b'{"packetId":"q","messages":[{}]}\n{"packetId":"r","messages":[7]}\n'
    resp = await client.post("/ingest", data=bad, headers=ctype)
    assert resp.status == 422 and "line 2" in (await resp.json())["error"]
    stats = await (await client.get("/stats")).json()
    assert (stats["packets"], stats["messages"], stats["duplicates"]) == (5, 15, 2)
    assert stats["emitters"] == {
        "e0": {"packets": 3, "messages": 1 + 3 + 5},
        "e1": {"packets": 2, "messages": 2 + 4},
    }


async def test_health_advertises_batches(client: Client) -> None:
    body = await (await client.get("/health")).json()
    assert body["status"] == "ok" and body["batch"] is True


@pytest.mark.parametrize(
    ("data", "headers", "status", "code"),
    [
        (b"{nope", {"Content-Type": "application/json"}, 400, "malformed_json"),
        (b'{"messages": []}', {"Content-Type": "application/json"}, 422, "invalid_packet"),
        (b'{"messages": [1]}', {"Content-Type": "application/json"}, 422, "invalid_packet"),
        (b"hello", {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        (b"x" * 20_000, {"Content-Type": "application/json"}, 413, "payload_too_large"),
    ],
)
async def test_bad_input_is_a_json_error_and_counts_nothing(
    client: Client, data: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    resp = await client.post("/ingest", data=data, headers=headers)
    assert resp.status == status
    body = await resp.json()
    assert body["code"] == code and body["error"]
    stats = await (await client.get("/stats")).json()
    assert stats["packets"] == 0


async def test_unknown_routes_and_methods_are_json_errors(client: Client) -> None:
    resp = await client.get("/nowhere")
    assert resp.status == 404 and "no route GET /nowhere" in (await resp.json())["error"]
    resp = await client.get("/ingest")
    assert resp.status == 405 and (await resp.json())["code"] == "method_not_allowed"


async def test_dedupe_window_is_bounded(serve: Serve) -> None:
    client = await serve(make_app(AnalyzerConfig(dedupe_window=2)))
    for pid in ("a", "b", "c"):
        await client.post("/ingest", json=packet(pid))
    stats = await (await client.get("/stats?ids=1")).json()
    assert stats["ids"] == ["b", "c"] and stats["ids_truncated"] is True


async def test_injected_failures_and_delays_are_served(serve: Serve) -> None:
    # Chaos settings take aiohttp's route alone (no front door): they still apply.
    client = await serve(make_app(AnalyzerConfig(fail_rate=1.0)))
    resp = await client.post("/ingest", json=packet("p1"))
    assert resp.status == 500 and (await resp.json())["code"] == "injected"
    stats = await (await client.get("/stats")).json()
    assert (stats["packets"], stats["injected_failures"]) == (0, 1)


def port(listening: server.Listening) -> int:
    return int(listening.url.rsplit(":", 1)[1])


async def test_a_keep_alive_connection_takes_batches_then_other_routes() -> None:
    # What the distributor's forwarding pool does: batches back to back on one connection,
    # through the front door; a GET after them is handed to aiohttp on the same socket.
    app = make_app(AnalyzerConfig(max_body_bytes=10_000))
    listening = await server.listen(app, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port(listening))
    try:
        for start in (0, 3):
            body = b"\n".join(orjson.dumps(packet(f"p{i}", 2)) for i in range(start, start + 3))
            writer.write(
                b"POST /ingest HTTP/1.1\r\nHost: localhost\r\n"
                b"Content-Type: application/x-ndjson\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            status, _, answer = await read_response(reader)
            assert status == 200 and orjson.loads(answer) == {
                "accepted": 3,
                "new": 3,
                "duplicates": 0,
            }
        writer.write(b"GET /stats HTTP/1.1\r\nHost: localhost\r\n\r\n")
        status, _, answer = await read_response(reader)
        stats = orjson.loads(answer)
        assert status == 200 and (stats["packets"], stats["messages"]) == (6, 12)
    finally:
        writer.close()
        await writer.wait_closed()
        await listening.stop()


async def test_an_oversized_batch_is_refused_before_its_body() -> None:
    app = make_app(AnalyzerConfig(max_body_bytes=1000))
    listening = await server.listen(app, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port(listening))
    try:
        writer.write(b"POST /ingest HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\n\r\n")
        status, headers, answer = await read_response(reader)
        assert status == 413 and orjson.loads(answer)["code"] == "payload_too_large"
        assert headers["connection"] == "close"
    finally:
        writer.close()
        await writer.wait_closed()
        await listening.stop()


async def test_a_gzipped_batch_is_read_as_the_same_packets(client: Client) -> None:
    import gzip

    body = b"\n".join(orjson.dumps(packet(f"z{i}", 2)) for i in range(20))
    resp = await client.post(
        "/ingest",
        data=gzip.compress(body),
        headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
    )
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"accepted": 20, "new": 20, "duplicates": 0}
    stats = await (await client.get("/stats")).json()
    assert (stats["packets"], stats["messages"]) == (20, 40)


async def test_a_storing_analyzer_answers_searches_of_what_it_acknowledged(
    serve: Serve, tmp_path: Path
) -> None:
    client = await serve(make_app(AnalyzerConfig(store=str(tmp_path / "store"))))
    body = b"\n".join(orjson.dumps(packet(f"p{i}", 3)) for i in range(5)) + b"\n"
    resp = await client.post("/ingest", data=body, headers={"Content-Type": NDJSON})
    assert (await resp.json())["new"] == 5
    health = await (await client.get("/health")).json()
    assert health["store"] is True
    page = await (await client.get("/search?q=2&limit=4")).json()
    assert [(i["packetId"], i["index"]) for i in page["items"]] == [
        ("p4", 2),
        ("p3", 2),
        ("p2", 2),
        ("p1", 2),
    ]
    assert page["items"][0]["analyzer"] == "a1" and page["cursor"]
    rest = await (await client.get(f"/search?q=2&limit=4&cursor={page['cursor']}")).json()
    assert [i["packetId"] for i in rest["items"]] == ["p0"] and rest["cursor"] is None
    hist = await (await client.get("/histogram")).json()
    assert hist["total"] == 15 and hist["partial"] == []
    context = await (await client.get("/context?packetId=p2&index=1&before=1&after=1")).json()
    assert [i["message"] for i in context["items"]] == ["0", "1", "2"]
    stats = await (await client.get("/stats")).json()
    assert stats["store"]["stored_messages"] == 15 and stats["store"]["segments"] == 1


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/search?level=LOUD", "level"),
        ("/search?q=%22open", "q"),
        ("/histogram?buckets=0", "buckets"),
        ("/search?since=soon", "since"),
        ("/context?packetId=p1", "index"),
        ("/context?index=0", "packetId"),
        ("/context?packetId=p1&index=0&around=3", "around"),
    ],
)
async def test_bad_search_parameters_are_422_naming_them(
    serve: Serve, tmp_path: Path, path: str, field: str
) -> None:
    client = await serve(make_app(AnalyzerConfig(store=str(tmp_path / "store"))))
    resp = await client.get(path)
    assert resp.status == 422
    body = await resp.json()
    assert body["detail"] == {"field": field} and field in body["error"]


async def test_without_a_store_search_is_a_404_saying_so(serve: Serve) -> None:
    client = await serve(make_app(AnalyzerConfig()))
    assert (await (await client.get("/health")).json())["store"] is False
    resp = await client.get("/search?q=x")
    assert resp.status == 404 and "--store" in (await resp.json())["error"]


async def test_a_store_that_cannot_write_acknowledges_nothing(serve: Serve, tmp_path: Path) -> None:
    app = make_app(AnalyzerConfig(store=str(tmp_path / "store")))
    client = await serve(app)
    ok = await client.post("/ingest", json=packet("p0"))
    assert (await ok.json())["new"] == 1
    store = app[STATE].store
    assert store is not None and store._seg is not None
    store._seg.execute("PRAGMA query_only = ON")  # the segment refuses writes, as a full disk
    refused = await client.post("/ingest", json=packet("p1", 3))
    assert refused.status == 503 and refused.headers["Retry-After"]
    body = await refused.json()
    assert body["code"] == "store_failure" and "readonly" in body["error"]
    stats = await (await client.get("/stats")).json()
    assert stats["packets"] == 1 and stats["store"]["failures"] == 1
    store._seg.execute("PRAGMA query_only = OFF")
    # Sent again, it is stored: its id was taken back when its rows were not written.
    again = await client.post("/ingest", json=packet("p1", 3))
    assert await again.json() == {"accepted": 1, "new": 1, "duplicates": 0}
    found = await (await client.get("/search")).json()
    assert [i["packetId"] for i in found["items"]] == ["p1", "p1", "p1", "p0"]


async def test_a_rebound_host_name_is_refused_on_ingest_and_reads(serve: Serve) -> None:
    client = await serve(make_app(AnalyzerConfig(allowed_hosts=("an.example",))))
    body = b'{"packetId":"h1","messages":[{"m":1}]}'
    hostile = {"Host": "evil.example:9001", "Content-Type": "application/json"}
    for method, path in (("POST", "/ingest"), ("GET", "/stats")):
        resp = await client.request(method, path, data=body, headers=hostile)
        assert resp.status == 421, path
        assert (await resp.json())["code"] == "host_not_allowed"
    ok = {"Host": "an.example", "Content-Type": "application/json"}
    resp = await client.post("/ingest", data=body, headers=ok)
    assert resp.status == 200 and (await resp.json())["new"] == 1
