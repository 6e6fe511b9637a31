"""A latency histogram with fixed bounds: cheap to observe, and two snapshots of it give the
percentiles of what happened between them (`logdist bench` reads a fleet's before and after).

A percentile is reported as the upper bound of the bucket it falls in, so it never flatters.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping

# Upper bounds in milliseconds; past the last is "inf".
BOUNDS_MS = (
    1,
    2,
    3,
    5,
    7,
    10,
    15,
    20,
    25,
    30,
    40,
    50,
    75,
    100,
    150,
    200,
    300,
    500,
    1000,
    2000,
    5000,
)
INF = "inf"


class LatencyHistogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS_MS) + 1)
        self._bounds = [b / 1000 for b in BOUNDS_MS]

    def observe(self, seconds: float, n: int = 1) -> None:
        self.counts[bisect_left(self._bounds, seconds)] += n

    def to_json(self) -> dict[str, int]:
        """Counts by upper bound in ms ("inf" last), not cumulative."""
        keys = [str(b) for b in BOUNDS_MS] + [INF]
        return dict(zip(keys, self.counts, strict=True))


def diff(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after}


def percentile(counts: Mapping[str, int], p: float) -> float | None:
    """The upper bound (ms) of the bucket holding the `p` quantile (0-1) of `counts` (as
    `to_json` gives them); inf when it lies past the last bound, None when empty."""
    total = sum(counts.values())
    if not total:
        return None
    rank = p * total
    seen = 0
    for key, n in counts.items():
        seen += n
        if seen >= rank and n:
            return float("inf") if key == INF else float(key)
    return float("inf")
