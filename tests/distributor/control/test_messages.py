"""Packets as cluster mode's stream messages: what is published reads back as the same packets."""

from __future__ import annotations

import zlib

import pytest

from logdist.distributor.control.messages import (
    COMPRESS_AT,
    ENCODING,
    message_id,
    message_of,
    packets_of,
)
from logdist.errors import LogdistError
from logdist.formats.packet import parse_batch, parse_one


def test_one_small_packet_is_its_own_json_keyed_by_its_id() -> None:
    packet = parse_one(b'{"packetId": "p1", "messages": [{"m": 1}]}')
    plain, body, headers = message_of([packet])
    assert (plain, body) == (len(packet.body), packet.body)
    assert headers == {"Nats-Msg-Id": "p1"}
    assert [(p.id, p.messages) for p in packets_of(body, headers)] == [("p1", 1)]


def test_a_large_run_is_deflated_and_reads_back_whole() -> None:
    lines = b"\n".join(
        b'{"packetId": "r%d", "messages": [{"message": "%s"}]}' % (i, b"x" * 40) for i in range(40)
    )
    packets = parse_batch(lines, ndjson=True)
    plain, body, headers = message_of(packets)
    assert plain >= COMPRESS_AT and headers[ENCODING] == "deflate" and len(body) < plain
    back = [part for p in packets_of(body, headers) for part in p.parts()]
    assert [p.id for p in back] == [f"r{i}" for i in range(40)]
    assert headers["Nats-Msg-Id"] == message_id(packets[0], packets[-1], 40) == "r0..r39#40"


def test_a_message_that_is_not_packets_is_refused() -> None:
    with pytest.raises(zlib.error):
        packets_of(b"not deflate", {ENCODING: "deflate"})
    with pytest.raises(LogdistError):
        packets_of(b'{"no": "packet"}')
