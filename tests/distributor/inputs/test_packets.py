from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.distributor.conftest import MakeDistributor, service
from tests.support.fakes import eventually, start_analyzer

PACKET = {"packetId": "p1", "emitter": "e1", "messages": [{"level": "INFO", "message": "hi"}]}


async def test_packet_is_accepted_then_delivered(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    fake, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a1": (url, 1)})
    resp = await client.post("/log-packet", json=PACKET)
    assert resp.status == 202
    assert await resp.json() == {"packetId": "p1", "status": "accepted"}
    await eventually(lambda: fake.ids == ["p1"], what="delivery")
    assert fake.received[0] == PACKET  # every field verbatim


async def test_a_gzipped_body_is_accepted_as_the_packets_inside(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    import gzip

    fake, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a1": (url, 1)})
    body = b"\n".join(orjson.dumps({**PACKET, "packetId": f"g{i}"}) for i in range(5))
    resp = await client.post(
        "/log-packets",
        data=gzip.compress(body),
        headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
    )
    assert resp.status == 202, await resp.text()
    await eventually(lambda: sorted(fake.ids) == [f"g{i}" for i in range(5)], what="delivery")


async def test_missing_packet_id_is_assigned_and_returned(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    fake, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a1": (url, 1)})
    resp = await client.post("/log-packet", json={"messages": [{"message": "x"}], "custom": [1, 2]})
    pid = (await resp.json())["packetId"]
    assert len(pid) == 36
    await eventually(lambda: fake.ids == [pid], what="delivery")
    assert fake.received[0]["custom"] == [1, 2]


@pytest.mark.parametrize("content_type", ["application/x-ndjson", "application/json"])
async def test_batch_ingest_is_taken_whole(
    aiohttp_server: Any, make_distributor: MakeDistributor, content_type: str
) -> None:
    fake, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a1": (url, 1)})
    packets: list[dict[str, Any]] = [{**PACKET, "packetId": f"p{i}"} for i in range(50)]
    if content_type == "application/json":
        body = orjson.dumps(packets)
    else:
        body = b"\n".join(orjson.dumps(p) for p in packets) + b"\n"
    resp = await client.post("/log-packets", data=body, headers={"Content-Type": content_type})
    assert resp.status == 202
    reply = await resp.json()
    assert reply["accepted"] == 50 and reply["packetIds"][:2] == ["p0", "p1"]
    await eventually(lambda: len(fake.ids) == 50, what="delivery")
    assert sorted(fake.ids) == sorted(p["packetId"] for p in packets)


BAD = [
    ("/log-packet", b"{oops", "application/json", 400, "malformed_json"),
    ("/log-packet", b"[]", "application/json", 422, "invalid_packet"),
    ("/log-packet", b'{"messages": []}', "application/json", 422, "invalid_packet"),
    ("/log-packet", b'{"messages": {"a": 1}}', "application/json", 422, "invalid_packet"),
    (
        "/log-packet",
        b'{"messages": [{}], "packetId": 5}',
        "application/json",
        422,
        "invalid_packet",
    ),
    ("/log-packet", b'{"messages": [{}]}', "text/plain", 415, "unsupported_media_type"),
    (
        "/log-packet",
        b'{"messages": [{}]}',
        "application/x-www-form-urlencoded",
        415,
        "unsupported_media_type",
    ),
    ("/log-packet", b'{"messages": [{}]}\n', "application/x-ndjson", 415, "unsupported_media_type"),
    (
        "/log-packets",
        b'{"messages": [{}]}\n{"messages": 3}',
        "application/x-ndjson",
        422,
        "invalid_packet",
    ),
    ("/log-packets", b'{"messages": [{}]}', "application/json", 422, "invalid_packet"),
    ("/log-packets", b"", "application/x-ndjson", 422, "invalid_packet"),
    ("/log-packets", b"[1,", "application/json", 400, "malformed_json"),
    ("/log-packets", b"x", "image/png", 415, "unsupported_media_type"),
]


@pytest.mark.parametrize(("path", "data", "ctype", "status", "code"), BAD)
async def test_bad_input_is_refused_with_a_json_error_and_counted(
    make_distributor: MakeDistributor, path: str, data: bytes, ctype: str, status: int, code: str
) -> None:
    client = await make_distributor()
    resp = await client.post(path, data=data, headers={"Content-Type": ctype})
    assert resp.status == status
    body = await resp.json()
    assert body["code"] == code and isinstance(body["error"], str) and body["error"]
    d = service(client)
    assert d.counters.rejected[code] == 1
    assert d.counters.received_packets == 0 and not d.dispatcher.queue


async def test_oversized_body_is_refused_before_it_is_read(
    make_distributor: MakeDistributor,
) -> None:
    client = await make_distributor(max_body_bytes=1000)
    resp = await client.post(
        "/log-packet", data=b"x" * 5000, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 413
    assert "exceeds the limit of 1000 bytes" in (await resp.json())["error"]


async def test_oversized_chunked_body_is_refused_while_streaming(
    make_distributor: MakeDistributor,
) -> None:
    client = await make_distributor(max_body_bytes=1000)

    async def chunks() -> Any:
        for _ in range(100):
            yield b"x" * 100

    resp = await client.post(
        "/log-packet", data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert resp.status == 413
    assert (await resp.json())["code"] == "payload_too_large"


async def test_full_queue_answers_503_with_retry_after_and_loses_nothing(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    fake, url = await start_analyzer(aiohttp_server, healthy=False)
    client = await make_distributor({"a1": (url, 1)}, queue_capacity=5, retry_after=2)
    accepted = []
    for i in range(5):
        resp = await client.post("/log-packet", json={**PACKET, "packetId": f"p{i}"})
        assert resp.status == 202
        accepted.append(f"p{i}")
    resp = await client.post("/log-packet", json={**PACKET, "packetId": "p5"})
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "2"
    body = await resp.json()
    assert body["code"] == "backpressure" and body["detail"] == {"depth": 5, "capacity": 5}
    resp = await client.post("/log-packets", json=[PACKET] * 6)
    assert resp.status == 413  # can never fit: not worth retrying
    fake.healthy = True
    await eventually(lambda: sorted(fake.ids) == accepted, what="queued packets delivered")
    resp = await client.post("/log-packet", json={**PACKET, "packetId": "p5"})
    assert resp.status == 202
    assert service(client).counters.rejected["backpressure"] == 1
