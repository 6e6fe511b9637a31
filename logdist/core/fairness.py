"""Max-min fair admission: when the distributor fills, who may still add to it.

Every emitter holds some of what the distributor holds (`held`, in the queue's units). While
`held` stays within the **budget** (`pressure` of the capacity) everyone is admitted, as
before. Past it, an emitter is admitted only if, holding `n` more, it would still be within
its **fair share** of the budget: the max-min share, where the emitters that hold little keep
what they hold and those that want more divide what is left equally. With `q` each emitter's
holding, the fair share `f` is the level at which `g(f) = Σ min(q_j, f)` reaches the budget;
`x ≤ f` exactly when `g(x) ≤ budget`, since `g` grows with `x`. So an emitter asking to reach
`x = q_e + n` is admitted when `Σ_{j≠e} min(q_j, x) + x ≤ budget`, and an emitter that holds
nothing always is (it is below any share). Whoever is admitted is admitted until the
distributor is truly full (the capacity: 503 for all); whoever is past its share is refused
(429) while the others still have the room between the budget and the capacity — so a burst
cannot fill the distributor and shut out the quiet emitters.

`g(x)` is read from two Fenwick trees over holdings (how many emitters hold exactly k, and
what they hold together), so an admission and an update cost O(log capacity) whatever the
number of emitters — no scan of them. (Max-min fairness as in Demers, Keshav and Shenker's
fair queueing; the trees as in Fenwick 1994.)
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Hashable, Iterable
from itertools import accumulate


class Fenwick:
    """Prefix sums over 1..size with point updates, both O(log size)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.tree = [0] * (size + 1)

    def add(self, index: int, delta: int) -> None:
        while index <= self.size:
            self.tree[index] += delta
            index += index & -index

    def prefix(self, index: int) -> int:
        """The sum over 1..index."""
        total = 0
        index = min(index, self.size)
        while index > 0:
            total += self.tree[index]
            index -= index & -index
        return total


class FairShare:
    """What each emitter holds of `capacity`, and whether it may hold more."""

    def __init__(self, capacity: int, pressure: float = 0.5) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if not 0 < pressure <= 1:
            raise ValueError(f"pressure must be in (0, 1], got {pressure}")
        self.capacity = capacity
        # What the fair shares divide; within it everyone is admitted.
        self.budget = max(1, int(capacity * pressure))
        self.holding: dict[Hashable, int] = {}
        self.held = 0
        self._count = Fenwick(capacity)  # emitters holding exactly k (k >= 1)
        self._sum = Fenwick(capacity)  # what those emitters hold together

    def _move(self, old: int, new: int) -> None:
        if old:
            self._count.add(min(old, self.capacity), -1)
            self._sum.add(min(old, self.capacity), -old)
        if new:
            self._count.add(min(new, self.capacity), 1)
            self._sum.add(min(new, self.capacity), new)

    def add(self, emitter: Hashable, n: int) -> None:
        """`emitter` now holds `n` more (admitted, or taken without asking)."""
        old = self.holding.get(emitter, 0)
        self.holding[emitter] = old + n
        self.held += n
        self._move(old, old + n)

    def remove(self, emitter: Hashable, n: int) -> None:
        """`n` of what `emitter` held has left (delivered, or set aside)."""
        old = self.holding.get(emitter, 0)
        n = min(n, old)
        new = old - n
        if new:
            self.holding[emitter] = new
        else:
            self.holding.pop(emitter, None)
        self.held -= n
        self._move(old, new)

    def below(self, x: int) -> int:
        """`g(x)`: what everyone would hold, each capped at `x`."""
        if x >= self.capacity:
            return self.held
        emitters_up_to_x = self._count.prefix(x)
        return self._sum.prefix(x) + x * (len(self.holding) - emitters_up_to_x)

    def fair_share(self) -> int:
        """The max-min share of the budget an emitter may hold now (for views): the budget
        itself while everything held fits in it."""
        return self.budget if self.held <= self.budget else self.level(self.budget)

    def level(self, limit: int) -> int:
        """The max-min share of `limit`: the most `x` with `g(x) <= limit` (`limit` itself
        when everything held fits in it)."""
        lo, hi = 0, limit + 1  # g(lo) <= limit; hi is past the answer
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.below(mid) <= limit:
                lo = mid
            else:
                hi = mid
        return lo

    def full(self, n: int) -> bool:
        """Holding `n` more would pass the capacity: no one may (503)."""
        return self.held + n > self.capacity

    def admits(self, emitter: Hashable, n: int, share_of: int | None = None) -> bool:
        """Whether `emitter` may hold `n` more: yes within the budget; past it, yes only
        within its max-min share of `share_of` (default: the budget) or holding nothing (a
        429 otherwise). Whether there is room at all is the caller's to say (`full`, or the
        queue's own capacity)."""
        calm = self.held + n <= self.budget
        return calm or self.within(emitter, n, self.budget if share_of is None else share_of)

    def within(self, emitter: Hashable, n: int, limit: int) -> bool:
        """Whether `emitter`, holding `n` more, stays within its max-min share of `limit`
        (one that holds nothing always does)."""
        mine = self.holding.get(emitter, 0)
        if not mine:
            return True
        x = mine + n
        # Everyone else capped at x, and this emitter at x itself.
        return self.below(x) - min(mine, x) + x <= limit


class Snapshot:
    """The same reckoning over holdings read at once (cluster mode reads the stream's): sorted
    with their prefix sums, O(n log n) to make, `g(x)` in O(log n) by bisection."""

    def __init__(self, holdings: Iterable[int]) -> None:
        self.q = sorted(h for h in holdings if h > 0)
        self.prefix = list(accumulate(self.q, initial=0))

    def below(self, x: int) -> int:
        """`g(x)`: what everyone would hold, each capped at `x`."""
        i = bisect_left(self.q, x)
        return self.prefix[i] + x * (len(self.q) - i)

    def level(self, limit: int) -> int:
        """The most `x` with `g(x) <= limit` (`limit` itself when everything fits in it)."""
        left = limit
        for i, q in enumerate(self.q):
            others = len(self.q) - i  # those holding q or more, each capped at x
            if q * others > left:
                return max(0, left // others)
            left -= q
        return limit

    def within(self, held: int, mine: int, n: int, limit: int) -> bool:
        """Whether an emitter that held `held` in the snapshot and holds `mine` now (one that
        holds nothing always may) stays within its max-min share of `limit` holding `n`
        more: the others capped at `x = mine + n`, and `x` itself."""
        if not mine:
            return True
        x = mine + n
        return self.below(x) - min(held, x) + x <= limit
