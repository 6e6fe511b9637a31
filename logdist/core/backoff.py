"""Retry delays: capped exponential backoff with jitter, and the server's `Retry-After`."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delay before retry number `attempt` (1-based).

    The delay grows as base * factor**(attempt-1) up to `cap`; `jitter` spreads it over
    [d * (1 - jitter), d] so that many senders refused at once do not return at once. A
    server's `Retry-After` is a floor: never retry sooner than it asked.
    """

    base: float = 0.05
    factor: float = 2.0
    cap: float = 5.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.base <= 0 or self.factor < 1 or self.cap < self.base or not 0 <= self.jitter <= 1:
            raise ValueError(f"unusable backoff {self!r}")

    def delay(
        self, attempt: int, rand: Callable[[], float], retry_after: float | None = None
    ) -> float:
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        exponent = min(attempt - 1, 64)
        d = min(self.cap, self.base * math.pow(self.factor, exponent))
        d *= 1 - self.jitter * rand()
        if retry_after is not None and retry_after > 0:
            d = max(d, min(retry_after, self.cap * 12) * (1 + self.jitter * rand()))
        return d


def parse_retry_after(value: str | bytes | None, now: float | None = None) -> float | None:
    """Seconds a `Retry-After` header asks for, in either of its forms (RFC 9110 §10.2.3):
    delay-seconds, or an HTTP-date (seconds from `now`, the wall clock, and never below 0).
    None if absent or unusable. Every client of logdist's reads it here."""
    if value is None:
        return None
    text = (value.decode("latin-1") if isinstance(value, bytes) else value).strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
