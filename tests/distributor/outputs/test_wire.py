"""Each way of delivering encodes a batch as its analyzers read it, and the wire picks the
way an analyzer's settings ask for."""

from __future__ import annotations

import gzip

import orjson
import pytest

from logdist.core.delivery import DELIVERED, FAILED, REFUSED, Delivery
from logdist.core.registry import Registry
from logdist.distributor.outputs.base import Sent
from logdist.distributor.outputs.wire import JSON_ARRAY, NDJSON_BATCH, PACKET, Wire, output_for
from logdist.formats.packet import Packet, parse_batch
from logdist.net.pool import Answer
from logdist.net.web import JSON, NDJSON

BODY = b'{"packetId":"a","messages":[{"m":1}]}\n{"packetId":"b","messages":[{"m":2},{"m":3}]}'


def batch() -> list[Packet]:
    return parse_batch(BODY, ndjson=True)


def test_ndjson_is_the_packets_one_a_line() -> None:
    body = b"".join(NDJSON_BATCH.encode(batch()))
    assert [orjson.loads(line)["packetId"] for line in body.splitlines()] == ["a", "b"]
    assert NDJSON_BATCH.content_type == NDJSON


def test_a_json_array_holds_every_packet() -> None:
    (body,) = JSON_ARRAY.encode(batch())
    assert [p["packetId"] for p in orjson.loads(body)] == ["a", "b"]
    assert JSON_ARRAY.content_type == JSON


def test_one_packet_a_request_is_the_packet_itself() -> None:
    first = batch()[:1]
    assert orjson.loads(b"".join(PACKET.encode(first)))["packetId"] == "a"


@pytest.mark.parametrize(("status", "verdict"), [(200, DELIVERED), (503, FAILED), (400, REFUSED)])
def test_the_answer_status_is_the_batch_verdict(status: int, verdict: str) -> None:
    assert NDJSON_BATCH.sort(Answer(status), Sent([], 3)).kind == verdict


@pytest.mark.parametrize(
    ("fmt", "batches", "expected"),
    [("ndjson", True, NDJSON_BATCH), ("json-array", True, JSON_ARRAY), ("json", False, PACKET)],
)
def test_the_output_follows_the_analyzers_format(fmt: str, batches: bool, expected: object) -> None:
    registry = Registry(now=lambda: 0.0)
    analyzer = registry.add("a1", "http://h:1/ingest", 1, Delivery(format=fmt))
    assert analyzer.batches is batches
    assert output_for(analyzer) is expected


async def test_gzip_is_applied_when_asked_and_framed() -> None:
    registry = Registry(now=lambda: 0.0)
    analyzer = registry.add(
        "a1", "http://h:1/ingest", 1, Delivery(format="ndjson", compression="gzip")
    )
    wire = Wire()
    sent, fields = await wire.body(analyzer, batch())
    assert gzip.decompress(b"".join(sent.pieces)) == b"".join(NDJSON_BATCH.encode(batch()))
    assert b"gzip" in fields.lower() and NDJSON.encode() in fields
    wire.close()


def test_loki_labels_that_look_unbounded_are_named() -> None:
    from logdist.core.delivery import delivery_from
    from logdist.distributor.outputs.wire import unbounded_labels

    assert unbounded_labels(delivery_from({"format": "loki"})) == []
    risky = delivery_from({"format": "loki", "labels": "service,packetId,trace_id"})
    assert unbounded_labels(risky) == ["packetId", "trace_id"]
    assert unbounded_labels(delivery_from({"format": "elasticsearch"})) == []
