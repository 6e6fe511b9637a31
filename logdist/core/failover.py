"""Which of several distributors an emitter sends its next request to.

An emitter given more than one distributor URL (the replicas of a cluster) spreads its
requests over them in turn and steps around one that failed — refused the connection, timed
out or answered 5xx — until its backoff has passed. When every one is down, the wait is until
the first comes back. Pure logic: the clock and the jitter are given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from logdist.core.backoff import Backoff


class Failover:
    def __init__(
        self,
        urls: Sequence[str],
        now: Callable[[], float],
        rand: Callable[[], float],
        backoff: Backoff | None = None,
    ) -> None:
        if not urls:
            raise ValueError("at least one distributor URL is needed")
        self.urls = tuple(urls)
        self._now = now
        self._rand = rand
        self._backoff = backoff or Backoff(base=0.05, cap=5.0)
        self._down_until = [0.0] * len(self.urls)
        self._failures = [0] * len(self.urls)
        self._next = 0

    def up(self, i: int) -> bool:
        return self._down_until[i] <= self._now()

    def pick(self) -> int:
        """The next distributor in turn that is not backing off; if all are, the one that
        comes back first."""
        n = len(self.urls)
        for k in range(n):
            i = (self._next + k) % n
            if self.up(i):
                self._next = (i + 1) % n
                return i
        return min(range(n), key=self._down_until.__getitem__)

    def order(self) -> list[int]:
        """Every distributor, those not backing off first (for a registration to try in turn)."""
        n = len(self.urls)
        ring = [(self._next + k) % n for k in range(n)]
        return sorted(ring, key=lambda i: not self.up(i))

    def succeeded(self, i: int) -> None:
        self._failures[i] = 0
        self._down_until[i] = 0.0

    def failed(self, i: int, retry_after: float | None = None) -> float:
        """Distributor `i` did not take a request: it backs off (longer each time in a row,
        never sooner than its Retry-After). Returns how long to wait before the next
        attempt: 0 when another distributor is up."""
        self._failures[i] += 1
        now = self._now()
        delay = self._backoff.delay(self._failures[i], self._rand, retry_after)
        self._down_until[i] = now + delay
        soonest = min(self._down_until)
        return max(0.0, soonest - now)

    def describe(self) -> list[dict[str, object]]:
        now = self._now()
        return [
            {"url": url, "up": self._down_until[i] <= now, "failures": self._failures[i]}
            for i, url in enumerate(self.urls)
        ]
