"""Cluster mode's publishing (control.publisher): each emitter's packets on a subject of its
own, grouped while one of that subject is in flight, subjects taking turns. The stream here is
a recording stand-in for JetStream's publish (the real servers are in tests/e2e/test_cluster.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from logdist.distributor.control.messages import packets_of
from logdist.distributor.control.publisher import (
    PUBLISHING,
    SUBJECT,
    Publisher,
    emitter_of,
    subject_of,
)
from logdist.errors import Backpressure
from logdist.formats.packet import Packet, parse_batch


class Stream:
    """Records each publish and holds it until released."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[str]]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.gate = asyncio.Event()
        self.fail = False

    async def publish(self, subject: str, body: bytes, **kw: Any) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.sent.append(
            (subject, [i for p in packets_of(body, kw["headers"]) for i in p.ids or [p.id]])
        )
        await self.gate.wait()
        self.in_flight -= 1
        if self.fail:
            raise TimeoutError("no answer")


def packet(emitter: str, pid: str) -> Packet:
    body = b'{"packetId": "%s", "emitter": "%s", "messages": [{}]}' % (
        pid.encode(),
        emitter.encode(),
    )
    return Packet(pid, emitter, 1, body)


def publisher(stream: Stream, keyed: bool = True) -> tuple[Publisher, list[tuple[str, int]]]:
    took: list[tuple[str, int]] = []
    pub = Publisher("LOGDIST", 1.0, str, lambda s, n: took.append((s, n)), lambda: keyed)
    pub.js = stream
    return pub, took


def test_each_emitter_has_one_subject_of_one_token() -> None:
    ids = ["web-1", "syslog:10.0.0.7", "otlp:checkout.v2", "", "web-2"]
    subjects = [subject_of(e) for e in ids]
    assert len(set(subjects)) == len(ids)
    assert all(s.startswith(f"{SUBJECT}.") and s.count(".") == 3 for s in subjects)
    assert subject_of("web-1") == subjects[0] and subject_of(None) == subject_of("")


def test_a_run_of_several_emitters_goes_on_its_first_emitters_subject() -> None:
    run = parse_batch(
        b'{"packetId": "a", "emitter": "e1", "messages": [{}]}\n'
        b'{"packetId": "b", "emitter": "e2", "messages": [{}]}',
        ndjson=True,
    )
    assert [emitter_of(p) for p in run] == ["e1", "e2"]


async def test_packets_of_one_emitter_wait_and_go_together_while_others_take_turns() -> None:
    stream = Stream()
    pub, took = publisher(stream)
    first = pub.publish([packet("burst", "b0")])
    later = [pub.publish([packet("burst", f"b{i}")]) for i in range(1, 6)]
    quiet = [pub.publish([packet(f"q{i}", f"q{i}")]) for i in range(PUBLISHING + 2)]
    await asyncio.sleep(0)
    # One burst message in flight, and quiet subjects beside it up to PUBLISHING in all.
    assert stream.sent[0] == (subject_of("burst"), ["b0"])
    assert stream.most_in_flight == PUBLISHING
    beside = {subject_of(f"q{i}") for i in range(PUBLISHING - 1)}
    assert {s for s, _ in stream.sent[1:]} == beside
    stream.gate.set()
    await asyncio.gather(first, *later, *quiet)
    by_subject = [ids for s, ids in stream.sent if s == subject_of("burst")]
    assert by_subject == [["b0"], ["b1", "b2", "b3", "b4", "b5"]]  # grouped while waiting
    assert sorted(sum((ids for _, ids in stream.sent), [])) == sorted(
        [f"b{i}" for i in range(6)] + [f"q{i}" for i in range(PUBLISHING + 2)]
    )
    assert len(took) == len(stream.sent) and all(n > 0 for _, n in took)


async def test_while_the_stream_is_calm_all_go_on_one_subject_grouped() -> None:
    stream = Stream()
    pub, _ = publisher(stream, keyed=False)
    first = pub.publish([packet("e0", "p0")])
    rest = [pub.publish([packet(f"e{i}", f"p{i}")]) for i in range(1, 50)]
    await asyncio.sleep(0)
    stream.gate.set()
    await asyncio.gather(first, *rest)
    assert [s for s, _ in stream.sent] == [SUBJECT, SUBJECT]  # one message, then the rest
    assert stream.sent[1][1] == [f"p{i}" for i in range(1, 50)]


async def test_a_failed_publish_is_a_503_for_the_requests_in_it() -> None:
    stream = Stream()
    stream.fail = True
    stream.gate.set()
    pub, took = publisher(stream)
    with pytest.raises(Backpressure) as caught:
        await pub.publish([packet("e1", "p1"), packet("e2", "p2")])
    assert caught.value.status == 503 and "no answer" in caught.value.message
    assert pub.failures >= 1 and not took


async def test_while_the_stream_fills_a_run_of_several_emitters_goes_on_each_ones_subject() -> None:
    stream = Stream()
    stream.gate.set()
    pub, _ = publisher(stream, keyed=True)
    run = parse_batch(
        b"\n".join(
            b'{"packetId": "r%d", "emitter": "web-%d", "messages": [{}]}' % (i, i % 3)
            for i in range(6)
        ),
        ndjson=True,
        run=100,
    )
    assert len(run) == 1 and run[0].emitters  # one run of three emitters' packets
    await pub.publish(run)
    got = {s: sorted(ids) for s, ids in stream.sent}
    assert got == {
        subject_of("web-0"): ["r0", "r3"],
        subject_of("web-1"): ["r1", "r4"],
        subject_of("web-2"): ["r2", "r5"],
    }
