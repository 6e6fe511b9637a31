"""Which distributor an emitter sends to next (pure logic, on a fake clock)."""

from __future__ import annotations

import pytest

from logdist.core.backoff import Backoff
from logdist.core.failover import Failover
from tests.support.clock import FakeClock


def make(n: int) -> tuple[Failover, FakeClock]:
    clock = FakeClock(100.0)
    urls = [f"http://127.0.0.1:{8000 + i}" for i in range(n)]
    return Failover(urls, now=clock, rand=lambda: 0.0, backoff=Backoff(base=1.0, cap=8.0)), clock


def test_requests_take_each_distributor_in_turn() -> None:
    f, _ = make(3)
    assert [f.pick() for _ in range(6)] == [0, 1, 2, 0, 1, 2]


def test_a_failed_distributor_is_stepped_around_until_its_backoff_passes() -> None:
    f, clock = make(3)
    assert f.pick() == 0
    assert f.failed(0) == 0.0  # others are up: try one of them at once
    assert [f.pick() for _ in range(4)] == [1, 2, 1, 2]
    clock.advance(1.0)
    assert sorted(f.pick() for _ in range(3)) == [0, 1, 2]
    assert f.failed(0) == 0.0  # second failure in a row: backs off longer
    clock.advance(1.0)
    assert 0 not in [f.pick() for _ in range(4)]
    f.succeeded(0)
    assert 0 in [f.pick() for _ in range(3)]


def test_when_every_distributor_is_down_wait_for_the_first_back() -> None:
    f, clock = make(2)
    assert f.failed(0) == 0.0
    assert f.failed(1) == pytest.approx(1.0 - 0.0)  # 0 returns 1 s after it failed
    assert f.pick() == 0  # the one that comes back first
    assert f.failed(0, retry_after=5.0) >= 1.0
    assert f.pick() == 1
    assert [d["up"] for d in f.describe()] == [False, False]


def test_registration_tries_the_distributors_that_are_up_first() -> None:
    f, _ = make(3)
    f.failed(0)
    assert f.order()[-1] == 0 and sorted(f.order()) == [0, 1, 2]


def test_one_url_is_needed() -> None:
    with pytest.raises(ValueError):
        Failover([], now=FakeClock(), rand=lambda: 0.0)
