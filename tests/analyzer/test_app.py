from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from logdist.analyzer import make_app
from logdist.config import AnalyzerConfig

Client = TestClient[Any, Any]


def packet(pid: str, emitter: str = "e1", n: int = 1) -> dict[str, Any]:
    return {
        "packetId": pid,
        "emitter": emitter,
        "messages": [{"message": str(i)} for i in range(n)],
    }


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> Client:
    cfg = AnalyzerConfig(
        output=str(tmp_path / "out.ndjson"), dedupe_window=1000, max_body_bytes=10_000
    )
    c: Client = await aiohttp_client(make_app(cfg))
    return c


async def test_single_packet_is_counted_once_even_when_sent_twice(client: Client) -> None:
    for expected_new in (1, 0):
        resp = await client.post("/ingest", json=packet("p1", n=3))
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
    nd = b"\n".join(orjson.dumps(packet(f"n{i}", "e2", 2)) for i in range(3))
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
    first = sep.join(orjson.dumps(packet(f"p{i}", f"e{i % 2}", i + 1)) for i in range(4))
    await client.post("/ingest", data=first, headers={"Content-Type": "application/x-ndjson"})
    again = sep.join(orjson.dumps(packet(f"p{i}", f"e{i % 2}", i + 1)) for i in (2, 3, 4))
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


async def test_without_an_output_file_batches_are_counted_the_same(aiohttp_client: Any) -> None:
    # No output file: the analyzer reads batches without keeping each packet's line.
    client: Client = await aiohttp_client(make_app(AnalyzerConfig(dedupe_window=1000)))
    first = b"\n".join(orjson.dumps(packet(f"p{i}", f"e{i % 2}", i + 1)) for i in range(4))
    ctype = {"Content-Type": "application/x-ndjson"}
    await client.post("/ingest", data=first, headers=ctype)
    again = b"\n".join(orjson.dumps(packet(f"p{i}", f"e{i % 2}", i + 1)) for i in (2, 3, 4))
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


async def test_dedupe_window_is_bounded(aiohttp_client: Any) -> None:
    client: Client = await aiohttp_client(make_app(AnalyzerConfig(dedupe_window=2)))
    for pid in ("a", "b", "c"):
        await client.post("/ingest", json=packet(pid))
    stats = await (await client.get("/stats?ids=1")).json()
    assert stats["ids"] == ["b", "c"] and stats["ids_truncated"] is True
