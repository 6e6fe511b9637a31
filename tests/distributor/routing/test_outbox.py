"""How an analyzer's next request forms from its outbox."""

from __future__ import annotations

from logdist.core.delivery import Delivery
from logdist.core.registry import Registry
from logdist.distributor.routing.outbox import BATCH_BYTES, Outbox, opened
from logdist.formats.packet import Packet, parse_batch


def outbox(fmt: str) -> Outbox:
    analyzer = Registry(now=lambda: 0.0).add("a1", "http://h:1/ingest", 1, Delivery(format=fmt))
    return Outbox(analyzer)


def packets(n: int, size: int = 10) -> list[Packet]:
    return [Packet(f"p{i}", None, 1, b"x" * size) for i in range(n)]


def test_a_batch_takes_up_to_the_limit_and_leaves_the_rest() -> None:
    box = outbox("ndjson")
    box.packets.extend(packets(10))
    assert [p.id for p in box.next_request(4)] == ["p0", "p1", "p2", "p3"]
    assert len(box.packets) == 6


def test_a_batch_stops_at_its_byte_limit() -> None:
    box = outbox("ndjson")
    box.packets.extend(packets(3, size=BATCH_BYTES // 2))
    assert len(box.next_request(100)) == 1


def test_one_at_a_time_opens_a_run_and_keeps_its_order() -> None:
    box = outbox("json")
    run = parse_batch(
        b'{"packetId": "a", "messages": [{}]}\n{"packetId": "b", "messages": [{}]}',
        ndjson=True,
        run=1 << 20,
    )
    box.packets.extend(run)
    assert [p.id for p in box.next_request(100)] == ["a"]
    assert [p.id for p in opened(list(box.packets))] == ["b"]
