"""The routed-log ring behind `tail logs` and /ws/logs: what it keeps, and what it shows."""

from __future__ import annotations

from logdist.core.routed import LogFilter, RoutedLog
from logdist.formats.packet import parse_batch, parse_one


def packet(pid: str, emitter: str, *levels: str) -> bytes:
    messages = ",".join(
        f'{{"level": "{lv}", "message": "{pid}.{i}"}}' for i, lv in enumerate(levels)
    )
    return f'{{"packetId": "{pid}", "emitter": "{emitter}", "messages": [{messages}]}}'.encode()


def test_recent_messages_come_oldest_first_with_where_they_went() -> None:
    ring = RoutedLog(10)
    ring.record(1.0, "a1", [parse_one(packet("p1", "e1", "INFO", "ERROR"))])
    ring.record(2.0, "a2", [parse_one(packet("p2", "e2", "WARN"))])
    shown = ring.recent(10, LogFilter())
    assert [(m["message"], m["analyzer"], m["emitter"], m["index"]) for m in shown] == [
        ("p1.0", "a1", "e1", 0),
        ("p1.1", "a1", "e1", 1),
        ("p2.0", "a2", "e2", 0),
    ]
    assert [m["message"] for m in ring.recent(2, LogFilter())] == ["p1.1", "p2.0"]


def test_filters_by_analyzer_emitter_and_level() -> None:
    ring = RoutedLog(10)
    ring.record(1.0, "a1", [parse_one(packet("p1", "e1", "INFO", "error"))])
    ring.record(2.0, "a2", [parse_one(packet("p2", "e2", "ERROR"))])
    assert [m["message"] for m in ring.recent(10, LogFilter(level="ERROR"))] == ["p1.1", "p2.0"]
    assert [m["message"] for m in ring.recent(10, LogFilter(analyzer="a2"))] == ["p2.0"]
    assert [m["message"] for m in ring.recent(10, LogFilter(emitter="e1"))] == ["p1.0", "p1.1"]


def test_the_ring_keeps_its_capacity_in_packets_a_run_counting_as_its_packets() -> None:
    ring = RoutedLog(3)
    run = parse_batch(
        b"\n".join(packet(f"r{i}", "e1", "INFO") for i in range(3)), ndjson=True, run=1 << 20
    )
    ring.record(1.0, "a1", [parse_one(packet("old", "e1", "INFO"))])
    ring.record(2.0, "a1", run)
    assert [m["packetId"] for m in ring.recent(10, LogFilter())] == ["r0", "r1", "r2"]
