"""Token-bucket rate limiting with an injected clock."""

from __future__ import annotations

import math
from collections.abc import Callable


class TokenBucket:
    """Tokens accrue at `rate` per second up to `burst`; a rate of 0 never yields a token."""

    def __init__(
        self,
        rate: float,
        *,
        now: Callable[[], float],
        burst: float | None = None,
        full: bool = False,
    ) -> None:
        self._now = now
        self._last = now()
        self._tokens = 0.0
        self.rate = 0.0
        self.burst = 1.0
        self.set_rate(rate, burst)
        if full:  # starting with a burst's worth
            self._tokens = self.burst

    def set_rate(self, rate: float, burst: float | None = None) -> None:
        """Change the rate from now on; tokens already earned are kept (up to the new burst)."""
        if not math.isfinite(rate) or rate < 0:
            raise ValueError(f"rate must be a finite number >= 0, got {rate!r}")
        self._refill()
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else max(1.0, self.rate / 10.0)
        self._tokens = min(self._tokens, self.burst)

    def _refill(self) -> None:
        now = self._now()
        if now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    def take(self, n: int = 1) -> bool:
        """Spend `n` tokens if they are all there."""
        self._refill()
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def spend(self, n: float) -> None:
        """Spend `n` tokens whether or not they are all there (the bucket goes into debt,
        repaid before `delay` says any are there again)."""
        self._refill()
        self._tokens -= n

    def take_up_to(self, limit: int) -> int:
        """Spend as many whole tokens as are there, at most `limit`, and return how many."""
        self._refill()
        n = min(limit, int(self._tokens))
        self._tokens -= n
        return max(n, 0)

    def delay(self, n: float = 1) -> float:
        """Seconds until `n` tokens are there (infinite at rate 0 or when `n` exceeds the burst)."""
        self._refill()
        missing = n - self._tokens
        if missing <= 0:
            return 0.0
        if self.rate == 0 or n > self.burst:
            return math.inf
        return missing / self.rate
