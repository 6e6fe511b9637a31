"""`POST /log-records`: flat JSON records owned like packets (202), refused with a clear 4xx,
and pushed back with 503 + Retry-After when the queue is full (Fluent Bit and Vector retry
those)."""

from __future__ import annotations

from typing import Any

import orjson

from tests.distributor.conftest import EITHER_WAY, MakeDistributor, service
from tests.support.fakes import eventually, start_analyzer

# Fluent Bit `format json` (see tests/formats/test_records.py for the documentation cited).
BODY = orjson.dumps(
    [
        {"date": 1764676800.25, "log": "user signed in", "level": "info", "service": "auth"},
        {"date": 1764676801.0, "log": "disk at 91 %", "level": "warning", "host": "db-2"},
    ]
)


async def test_records_are_accepted_then_delivered_with_the_standard_fields(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    fake, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a1": (url, 1)})
    resp = await client.post(
        "/log-records", data=BODY, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 202, await resp.text()
    answer = await resp.json()
    assert answer["accepted"] == 2 and len(answer["packetIds"]) == 1
    await eventually(lambda: fake.ids == answer["packetIds"], what="delivery")
    messages = fake.received[0]["messages"]
    assert [(m["level"], m["service"], m["host"], m["message"]) for m in messages] == [
        ("INFO", "auth", "", "user signed in"),
        ("WARN", "", "db-2", "disk at 91 %"),
    ]
    assert messages[0]["ts"] == "2025-12-02T12:00:00.250Z"
    # A shipper's retry of the same request has the same ids, so analyzers count it once.
    resp = await client.post(
        "/log-records", data=BODY, headers={"Content-Type": "application/json"}
    )
    assert (await resp.json())["packetIds"] == answer["packetIds"]


@EITHER_WAY
async def test_ndjson_records_and_bad_bodies(
    aiohttp_server: Any, make_distributor: MakeDistributor, parse_workers: int
) -> None:
    fake, url = await start_analyzer(aiohttp_server)
    client = await make_distributor(
        {"a1": (url, 1)}, max_batch_bytes=4096, parse_workers=parse_workers
    )
    ndjson = b'{"message":"a","timestamp":"2026-12-02T10:00:00Z"}\n{"message":"b"}\n'
    resp = await client.post(
        "/log-records", data=ndjson, headers={"Content-Type": "application/x-ndjson"}
    )
    assert resp.status == 202 and (await resp.json())["accepted"] == 2
    cases = [
        (b'[{"log": "x"', "application/json", 400, "malformed_json"),
        (b"[1]", "application/json", 422, "invalid_packet"),
        (b'{"log": "x"}', "text/csv", 415, "unsupported_media_type"),
        (b'[{"log": "' + b"x" * 5000 + b'"}]', "application/json", 413, "payload_too_large"),
    ]
    for body, ctype, status, code in cases:
        resp = await client.post("/log-records", data=body, headers={"Content-Type": ctype})
        assert resp.status == status, (body[:20], await resp.text())
        assert (await resp.json())["code"] == code
    await eventually(lambda: len(fake.ids) == 1, what="only the good request delivered")
    # Counted as the records input's, in /status and /metrics.
    inputs = (await (await client.get("/status")).json())["counters"]["inputs"]
    assert inputs["records"] == {
        "received_packets": 1,
        "received_messages": 2,
        "rejected": {
            "malformed_json": 1,
            "invalid_packet": 1,
            "unsupported_media_type": 1,
            "payload_too_large": 1,
        },
    }
    assert inputs["packets"] == {"received_packets": 0, "received_messages": 0, "rejected": {}}
    text = await (await client.get("/metrics")).text()
    assert 'logdist_received_messages_total{input="records"} 2.0' in text
    assert 'logdist_rejected_total{input="records",reason="malformed_json"} 1.0' in text


async def test_a_full_queue_is_503_with_retry_after_and_the_ingest_token_is_asked(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    fake, url = await start_analyzer(aiohttp_server, healthy=False)
    client = await make_distributor(
        {"a1": (url, 1)}, queue_capacity=1, retry_after=3, ingest_token="s3cret"
    )
    auth = {"Authorization": "Bearer s3cret", "Content-Type": "application/json"}
    resp = await client.post(
        "/log-records", data=BODY, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 401
    resp = await client.post("/log-records", data=BODY, headers=auth)
    assert resp.status == 202
    more = orjson.dumps([{"log": "third"}])
    resp = await client.post("/log-records", data=more, headers=auth)
    assert resp.status == 503 and resp.headers["Retry-After"] == "3"
    assert (await resp.json())["code"] == "backpressure"
    fake.healthy = True
    await eventually(lambda: len(fake.ids) == 1, what="the queued records delivered")
    resp = await client.post("/log-records", data=more, headers=auth)
    assert resp.status == 202
    assert service(client).counters.rejected["backpressure"] == 1
