from __future__ import annotations

import math

import pytest

from logdist.core.backoff import Backoff, parse_retry_after
from logdist.core.ratelimit import TokenBucket
from tests.support.clock import FakeClock


def test_bucket_yields_rate_tokens_per_second() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, now=clock)
    got = 0
    for _ in range(100):  # 10 s in 0.1 s steps
        clock.advance(0.1)
        got += bucket.take_up_to(1000)
    assert got == 100


def test_bucket_burst_caps_what_accrues_while_idle() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100, now=clock, burst=5)
    clock.advance(60)
    assert bucket.take_up_to(1000) == 5


@pytest.mark.parametrize(
    ("rate", "tokens", "expected"), [(10, 1, 0.1), (4, 2, 0.5), (0, 1, math.inf)]
)
def test_bucket_delay_says_when_tokens_will_be_there(
    rate: float, tokens: int, expected: float
) -> None:
    bucket = TokenBucket(rate, now=FakeClock(), burst=10)
    assert bucket.delay(tokens) == pytest.approx(expected)


def test_rate_change_applies_from_now_on() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, now=clock, burst=100)
    clock.advance(1)
    bucket.set_rate(0, burst=100)
    clock.advance(10)
    assert bucket.take_up_to(1000) == 10  # earned at the old rate, nothing since
    assert not bucket.take()


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf")])
def test_bucket_refuses_bad_rates(bad: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(bad, now=FakeClock())


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (1, 0.0, 0.1),
        (2, 0.0, 0.2),
        (3, 0.0, 0.4),
        (10, 0.0, 5.0),  # capped
        (1000, 0.0, 5.0),
        (1, 1.0, 0.05),  # full jitter halves it
        (3, 0.5, 0.3),
    ],
)
def test_backoff_grows_exponentially_to_its_cap(attempt: int, rand: float, expected: float) -> None:
    policy = Backoff(base=0.1, factor=2, cap=5, jitter=0.5)
    assert policy.delay(attempt, lambda: rand) == pytest.approx(expected)


def test_retry_after_is_a_floor() -> None:
    policy = Backoff(base=0.1, cap=5, jitter=0.5)
    assert policy.delay(1, lambda: 0.0, retry_after=2) == pytest.approx(2.0)
    assert policy.delay(1, lambda: 1.0, retry_after=2) == pytest.approx(3.0)  # spread upwards
    assert policy.delay(10, lambda: 0.0, retry_after=1) == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        (" 1.5 ", 1.5),
        (b"120", 120.0),
        (b" 0 ", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 30.0),  # 30 s after `now` below
        (b"Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past
        (None, None),
        ("", None),
        ("soon", None),
        ("-1", None),
        ("nan", None),
    ],
)
def test_retry_after_takes_seconds_or_an_http_date(
    header: str | bytes | None, expected: float | None
) -> None:
    """One reader for every client: a fleet, a single emitter and forwarding alike."""
    now = 1445412450.0  # 2015-10-21 07:27:30 UTC
    assert parse_retry_after(header, now) == expected


def test_backoff_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(base=0)
    with pytest.raises(ValueError):
        Backoff().delay(0, lambda: 0.0)
