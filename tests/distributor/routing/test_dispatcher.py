"""The dispatcher alone, its forwarder faked: how routed packets become requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest

from logdist.config import AnalyzerRef, DistributorConfig
from logdist.distributor.node import Distributor
from logdist.formats.packet import Packet
from logdist.net.pool import Answer, Target


class HeldForwarder:
    """Records each request's packet ids and answers 200 when told to."""

    def __init__(self) -> None:
        self.requests: list[list[bytes]] = []
        self.release = asyncio.Event()

    async def post(
        self, t: Target, body: list[bytes], fields: bytes, timeout: float, keep: int = 0
    ) -> Answer:
        self.requests.append([piece for piece in body if piece != b"\n"])
        await self.release.wait()
        return Answer(200)

    def close(self) -> None:
        pass


@pytest.fixture
async def held(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Distributor, HeldForwarder]]:
    ref = AnalyzerRef("a1", "http://127.0.0.1:9/ingest", 1)
    settings = getattr(request, "param", {})
    d = Distributor(DistributorConfig(analyzers=(ref,), max_requests=3, **settings))
    d.registry.record_success("a1", batch=True)
    forwarder = HeldForwarder()
    d.dispatcher.wire._forwarder = forwarder  # type: ignore[assignment]
    d.dispatcher.start()
    yield d, forwarder
    forwarder.release.set()
    await d.dispatcher.stop()


def packet(n: int) -> Packet:
    return Packet(f"p{n}", None, 1, b"%d" % n)


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_packets_routed_while_a_sender_starts_join_its_request(
    held: tuple[Distributor, HeldForwarder],
) -> None:
    d, forwarder = held
    send = d.dispatcher._send
    started: list[object] = []

    def counted(box: Any) -> Coroutine[Any, Any, None]:
        started.append(box)
        return send(box)

    d.dispatcher._send = counted  # type: ignore[method-assign]
    d.dispatcher.enqueue([packet(1)])
    await turns()
    assert forwarder.requests == [[b"1"]]
    # Every sender busy: the next packets start one more sender, and all of them that were
    # routed before it ran go in its one request (one task, not one a packet).
    d.dispatcher.enqueue([packet(2)])
    d.dispatcher.enqueue([packet(3)])
    await turns()
    assert forwarder.requests == [[b"1"], [b"2", b"3"]]
    d.dispatcher.enqueue([packet(4)])
    await turns()
    d.dispatcher.enqueue([packet(5)])
    await turns()
    # max_requests (3) in flight: the fifth waits in the outbox for a sender to come back.
    assert forwarder.requests == [[b"1"], [b"2", b"3"], [b"4"]]
    assert d.dispatcher.outbox_depth("a1") == 1
    assert len(started) == 3 and len(d.dispatcher._tasks) == 1 + 3  # router and 3 senders
    forwarder.release.set()
    await turns(20)
    assert forwarder.requests[-1] == [b"5"] and len(forwarder.requests) == 4
    assert d.dispatcher.unacked == 0
    await turns()
    assert len(d.dispatcher._tasks) == 1  # senders end when their outbox is empty


@pytest.mark.parametrize("held", [{"forward_batch": 2}], indirect=True)
async def test_a_burst_of_several_batches_is_forwarded_in_parallel(
    held: tuple[Distributor, HeldForwarder],
) -> None:
    d, forwarder = held
    d.dispatcher.enqueue([packet(n) for n in range(7)])  # routed in one turn
    await turns(10)
    # Each sender that takes a batch and leaves more behind starts the next, up to 3.
    assert forwarder.requests == [[b"0", b"1"], [b"2", b"3"], [b"4", b"5"]]
    # The outbox took what its three senders carry; the seventh waits in the queue.
    assert d.dispatcher.outbox_depth("a1") == 0 and d.dispatcher.queued == 1
    forwarder.release.set()
    await turns(20)
    assert forwarder.requests[-1] == [b"6"] and d.dispatcher.unacked == 0


@pytest.mark.parametrize("held", [{"forward_batch": 2}], indirect=True)
async def test_a_quiet_emitters_packet_goes_out_after_one_round_not_after_the_burst(
    held: tuple[Distributor, HeldForwarder],
) -> None:
    d, forwarder = held
    burst = [Packet(f"b{n}", "burst", 1, b"b%d" % n) for n in range(1000)]
    d.dispatcher.enqueue(burst)
    await turns(10)
    d.dispatcher.enqueue([Packet("q", "quiet", 1, b"q")])
    for _ in range(10):  # the analyzer answers one request at a time
        forwarder.release.set()
        await turns(3)
        forwarder.release.clear()
        await turns(3)
    sent = [piece for request in forwarder.requests for piece in request]
    # Behind it: what the three senders held, then the burst's turn (quantum 100 messages)
    # at most; not the thousand.
    assert b"q" in sent and sent.index(b"q") <= 3 * 2 + 100
