"""Fair admission in the distributor (routing.shares) with a fake clock: a burst beside quiet
emitters is refused past its share and they are not; a lone emitter fills the queue as
before; refusals are counted and their spells logged once at each end."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from logdist.distributor.routing.shares import ACTIVE_SECONDS, SPELL_QUIET, Shares
from logdist.errors import Throttled
from logdist.formats.packet import Packet
from tests.distributor.conftest import MakeDistributor
from tests.support.clock import FakeClock
from tests.support.fakes import eventually, start_analyzer


def packet(emitter: str, i: int) -> Packet:
    return Packet(id=f"{emitter}-{i}", emitter=emitter, messages=1, body=b"{}")


def offer(shares: Shares, p: Packet) -> bool:
    """Admit `p` as the intake does (checked, then held); whether it was."""
    try:
        shares.check([p])
    except Throttled:
        return False
    shares.took([p])
    return True


def test_a_burst_is_refused_past_its_share_and_the_quiet_emitters_are_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "logdist.distributor")
    clock = FakeClock()
    shares = Shares(lambda: 200, 0.5, retry_after=1, now=clock)
    quiet = [f"q{i}" for i in range(50)]
    for e in quiet:  # each sent one, delivered since: heard from, holding nothing
        assert offer(shares, packet(e, 0))
        shares.settled([packet(e, 0)])
    taken = 0
    while offer(shares, packet("burst", taken)):
        taken += 1
    # Past the budget (100) the burst may hold the capacity less a packet for each of the
    # 50 quiet emitters that hold nothing: 150.
    assert taken == 150
    assert all(offer(shares, packet(e, 1)) for e in quiet)
    with pytest.raises(Throttled) as refused:
        shares.check([packet("burst", 999)])
    assert refused.value.status == 429 and refused.value.retry_after == 1
    assert refused.value.detail == {"emitter": "burst", "holding": 150}
    assert shares.throttled["burst"] == 2 and not shares.throttled["q1"]
    # What the views say: the burst holds 150 of the 200 held, the quiet ones one each; the
    # max-min share of 150 (the capacity less a packet for each quiet emitter) is 100 now.
    assert shares.fair_share() == 100 and shares.share("burst") == 0.75
    view = shares.to_json()
    keys = ("on", "held", "can_hold", "budget", "throttling", "throttled")
    assert {k: view[k] for k in keys} == {
        "on": True, "held": 200, "can_hold": 200, "budget": 100, "throttling": 1, "throttled": 2,
    }  # fmt: skip
    assert view["top_throttled"] == [{"id": "burst", "throttled": 2}]
    # One line when the spell starts, one when it has gone SPELL_QUIET seconds unrefused
    # (being admitted again meanwhile does not end it).
    shares.settled([packet("burst", i) for i in range(100)])
    assert offer(shares, packet("burst", 1000))
    assert shares.end_spells() == 0
    clock.advance(SPELL_QUIET)
    assert shares.end_spells() == 1 and shares.to_json()["throttling"] == 0
    lines = [r.getMessage() for r in caplog.records]
    assert sum("emitter_throttled emitter=burst" in m for m in lines) == 1
    assert sum("emitter_throttle_ended emitter=burst refused=2" in m for m in lines) == 1


def test_a_lone_emitter_fills_the_queue_as_before() -> None:
    clock = FakeClock()
    shares = Shares(lambda: 200, 0.5, retry_after=1, now=clock)
    offer(shares, packet("gone", 0))
    shares.settled([packet("gone", 0)])
    clock.advance(ACTIVE_SECONDS + 1)  # not heard from lately: nothing kept for it
    assert all(offer(shares, packet("lone", i)) for i in range(200))
    assert not offer(shares, packet("lone", 200))  # past the capacity (the queue says 503)


def test_off_admits_everyone() -> None:
    shares = Shares(lambda: 10, 0.0, retry_after=1, now=FakeClock())
    assert all(offer(shares, packet("burst", i)) for i in range(50))
    assert shares.held == 50 and not shares.throttled


def test_runs_count_each_packet_for_its_own_emitter() -> None:
    shares = Shares(lambda: 100, 0.5, retry_after=1, now=FakeClock())
    run = Packet(
        id="r", emitter=None, messages=3, body=b"", count=3, ids=["a", "b", "c"],
        counts=[1, 1, 1], emitters=["e1", "e2", "e1"],
    )  # fmt: skip
    shares.took([run])
    assert shares.holding == {"e1": 2, "e2": 1} and shares.held == 3
    shares.settled([run])
    assert not shares.holding and shares.held == 0
    shares.settled([packet("never-held", 0)])  # nothing held: nothing to give back
    assert not shares.holding and shares.held == 0


async def test_over_http_the_burst_gets_429_the_quiet_get_202_and_nothing_is_lost(
    aiohttp_server: Any, make_distributor: MakeDistributor
) -> None:
    fake, url = await start_analyzer(aiohttp_server, healthy=False)  # nothing leaves
    client = await make_distributor({"a1": (url, 1)}, queue_capacity=100, retry_after=3)

    async def send(emitter: str, i: int) -> int:
        body = {"packetId": f"{emitter}-{i}", "emitter": emitter, "messages": [{"m": i}]}
        resp = await client.post("/log-packet", json=body)
        return resp.status

    accepted = []
    for q in range(20):
        assert await send(f"q{q}", 0) == 202
        accepted.append(f"q{q}-0")
    i = 0
    while (status := await send("burst", i)) == 202:
        accepted.append(f"burst-{i}")
        i += 1
    assert status == 429
    # Past the budget (50 of 100) the burst may hold 100 less one for each of the 20 quiet
    # emitters, less what they hold: 60. The queue still has room for them.
    assert i == 60
    resp = await client.post(
        "/log-packet", json={"packetId": "burst-x", "emitter": "burst", "messages": [{}]}
    )
    body = await resp.json()
    assert resp.headers["Retry-After"] == "3" and body["code"] == "throttled"
    assert body["detail"] == {"emitter": "burst", "holding": 60}
    for q in range(20):
        assert await send(f"q{q}", 1) == 202
        accepted.append(f"q{q}-1")
    metrics = await (await client.get("/metrics")).text()
    assert 'logdist_emitter_throttled_total{emitter="burst"} 2.0' in metrics
    assert 'logdist_rejected_total{input="packets",reason="throttled"}' in metrics
    fake.healthy = True
    await eventually(lambda: sorted(fake.ids) == sorted(accepted), 10, "every 202 delivered")


def test_the_throttled_metric_names_the_most_refused_and_sums_the_rest() -> None:
    from collections import Counter

    from logdist.distributor.observe.metrics import THROTTLED_NAMED, throttled_metrics

    throttled: Counter[str | None] = Counter({f"e{i}": i + 1 for i in range(10_000)})
    (family,) = throttled_metrics(throttled)
    names = [s.labels["emitter"] for s in family.samples if s.name.endswith("_total")]
    assert len(names) == THROTTLED_NAMED + 1 and names[0] == "e9999" and names[-1] == "(others)"
    assert sum(s.value for s in family.samples if s.name.endswith("_total")) == sum(
        throttled.values()
    )
