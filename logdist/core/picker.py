"""Message-weighted pickers: which analyzer gets the next packet.

Every pick is *charged* the packet's message count, so it is the analyzers' shares of
messages, not of packets, that converge to their weights; packets stay whole, so the error
at any moment is bounded by one packet's size.

`SmoothWeightedPicker` is nginx's smooth weighted round robin (ngx_http_upstream_round_robin.c)
with the charge folded in; it is O(n) per pick and gives nginx's exact interleaving for
one-message packets. `DeadlinePicker` is the earliest-deadline-first form Envoy uses for large
pools: O(log n) per pick. `WeightedPicker` uses the first for small pools and the second for
large ones.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Collection, Iterator, Mapping
from typing import Protocol

from logdist.errors import InvalidRequest


def check_weight(weight: float) -> float:
    """Return `weight` as a float if it is a usable weight (finite and > 0), else raise."""
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise InvalidRequest(f"weight must be a number, got {type(weight).__name__}")
    w = float(weight)
    if not math.isfinite(w) or w <= 0:
        raise InvalidRequest(f"weight must be a finite number > 0, got {weight!r}")
    return w


# Members passed over by one pick: one (the analyzer that just failed the packet), or several
# (the analyzers that refused it).
Exclude = str | Collection[str] | None


class Picker(Protocol):
    def __len__(self) -> int: ...
    def __contains__(self, key: object) -> bool: ...
    def weights(self) -> Mapping[str, float]: ...
    def add(self, key: str, weight: float) -> None: ...
    def remove(self, key: str) -> None: ...
    def pick(self, cost: int = 1, exclude: Exclude = None) -> str | None: ...


class SmoothWeightedPicker:
    """nginx's smooth WRR, each pick charged `cost` units. O(n) per pick."""

    def __init__(self, weights: Mapping[str, float] | None = None) -> None:
        self._weights: dict[str, float] = {}
        self._current: dict[str, float] = {}
        for key, weight in (weights or {}).items():
            self.add(key, weight)

    def __len__(self) -> int:
        return len(self._weights)

    def __contains__(self, key: object) -> bool:
        return key in self._weights

    def weights(self) -> Mapping[str, float]:
        return self._weights

    def add(self, key: str, weight: float) -> None:
        """Add `key`, or change its weight if present. A newcomer starts with no credit."""
        weight = check_weight(weight)
        old = self._weights.get(key)
        self._weights[key] = weight
        if old is None:
            self._current[key] = 0.0
            self._recenter()
        elif old != weight:
            # Credit earned under the old weights would skew the new ratios: start afresh.
            for k in self._current:
                self._current[k] = 0.0

    def remove(self, key: str) -> None:
        weight = self._weights.pop(key, None)
        if weight is None:
            return
        del self._current[key]
        self._recenter()

    def _recenter(self) -> None:
        # The credits sum to zero while membership is fixed; re-establish that after a join or a
        # leave so that churn cannot make them drift without bound.
        if not self._current:
            return
        mean = sum(self._current.values()) / len(self._current)
        for key in self._current:
            self._current[key] -= mean

    def pick(self, cost: int = 1, exclude: Exclude = None) -> str | None:
        current = self._current
        best: str | None = None
        best_credit = -math.inf
        charged = 0.0
        skip: Collection[str] = (
            () if exclude is None else (exclude,) if isinstance(exclude, str) else exclude
        )
        for key, weight in self._weights.items():
            if skip and key in skip:
                continue
            credit = current[key] + weight * cost
            current[key] = credit
            charged += weight
            if credit > best_credit:
                best, best_credit = key, credit
        if best is not None:
            current[best] -= charged * cost
        return best


GOLDEN = 0.6180339887498949


class DeadlinePicker:
    """Earliest-deadline-first over a heap (Envoy's EDF scheduler). O(log n) per pick.

    Each member's deadline advances by cost/weight when it is picked, so over any run the
    units it receives stay within one packet of weight x virtual time.

    With `burst` > 1 the member just picked is picked again, its deadline advanced as usual,
    until it has taken `burst` units in a row (or is excluded, or `end_burst` is called): it
    then waits its turn that much longer, so shares stay within `burst` units (and two
    packets) of the weights at any moment and converge to them over time. In a pool of
    thousands each member otherwise gets one packet at a time, each a forward of its own.
    """

    _REBASE_AT = 1e12

    def __init__(self, weights: Mapping[str, float] | None = None, burst: int = 1) -> None:
        self._weights: dict[str, float] = {}
        self._version: dict[str, int] = {}
        # (deadline, version, key, weight): a member's entry carries its weight, so a pick
        # reads nothing else (with 10,000 members every other look-up is a cache miss).
        self._heap: list[tuple[float, int, str, float]] = []
        self._counter = itertools.count()
        self._now = 0.0
        self.burst = burst
        # The member of the current burst: (key, its version, its deadline), units left.
        self._last: tuple[str, int, float] | None = None
        self._left = 0
        for key, weight in (weights or {}).items():
            self.add(key, weight)

    def __len__(self) -> int:
        return len(self._weights)

    def __contains__(self, key: object) -> bool:
        return key in self._weights

    def weights(self) -> Mapping[str, float]:
        return self._weights

    def add(self, key: str, weight: float) -> None:
        """Add `key`, or change its weight if present; it is next due one unit from now."""
        weight = check_weight(weight)
        self._weights[key] = weight
        version = next(self._counter)
        self._version[key] = version
        units = 1.0
        if self.burst > 1:
            # Its first turn somewhere within one burst, spread by the golden ratio: members
            # added together do not all come due together, heaviest first, which would skew
            # the shares of any window shorter than a burst of every member.
            units = self.burst * ((version * GOLDEN) % 1.0)
        heapq.heappush(self._heap, (self._now + units / weight, version, key, weight))
        self._compact()

    def remove(self, key: str) -> None:
        if self._weights.pop(key, None) is not None:
            del self._version[key]
            self._compact()

    def _compact(self) -> None:
        # Removed and re-weighted members leave stale heap entries behind; they are skipped
        # lazily, and the heap is rebuilt once they outnumber the live ones.
        if len(self._heap) > 2 * len(self._weights) + 64:
            self._heap = [e for e in self._heap if self._version.get(e[2]) == e[1]]
            heapq.heapify(self._heap)

    def end_burst(self) -> None:
        self._last = None

    def _again(self, cost: int, skip: Collection[str]) -> str | None:
        """The current burst's member once more, if it may take `cost` more units."""
        if self._last is None or self._left < cost:
            return None
        key, version, deadline = self._last
        if self._version.get(key) != version or (skip and key in skip):
            return None
        weight = self._weights[key]
        # A new entry at the later deadline; the old one is stale (dropped lazily).
        version = next(self._counter)
        self._version[key] = version
        deadline += cost / weight
        heapq.heappush(self._heap, (deadline, version, key, weight))
        self._last = (key, version, deadline)
        self._left -= cost
        self._compact()
        return key

    def pick(self, cost: int = 1, exclude: Exclude = None) -> str | None:
        heap = self._heap
        version_of = self._version
        skip: Collection[str] = (
            () if exclude is None else (exclude,) if isinstance(exclude, str) else exclude
        )
        if self.burst > 1 and (key := self._again(cost, skip)) is not None:
            return key
        held: list[tuple[float, int, str, float]] = []
        while heap:
            entry = heap[0]
            if version_of.get(entry[2]) != entry[1]:  # removed or re-weighted since
                heapq.heappop(heap)
            elif skip and entry[2] in skip:
                held.append(heapq.heappop(heap))
            else:
                break
        if not heap:
            for entry in held:
                heapq.heappush(heap, entry)
            return None
        deadline, version, key, weight = heap[0]
        self._now = deadline
        heapq.heapreplace(heap, (deadline + cost / weight, version, key, weight))
        for entry in held:
            heapq.heappush(heap, entry)
        if self._now > self._REBASE_AT:
            self._rebase()
        self._last = (key, version, deadline + cost / weight)
        self._left = self.burst - cost
        return key

    def _rebase(self) -> None:
        now = self._now
        self._heap = [(d - now, v, k, w) for d, v, k, w in self._heap if self._version.get(k) == v]
        heapq.heapify(self._heap)
        self._now = 0.0
        self._last = None


class WeightedPicker:
    """The smooth picker for small pools, the deadline picker past `smooth_limit` members."""

    def __init__(self, smooth_limit: int = 32, burst: int = 1) -> None:
        self._smooth_limit = smooth_limit
        self._burst = burst
        self._impl: SmoothWeightedPicker | DeadlinePicker = SmoothWeightedPicker()

    def __len__(self) -> int:
        return len(self._impl)

    def __contains__(self, key: object) -> bool:
        return key in self._impl

    def __iter__(self) -> Iterator[str]:
        return iter(self._impl.weights())

    @property
    def is_smooth(self) -> bool:
        return isinstance(self._impl, SmoothWeightedPicker)

    def weights(self) -> Mapping[str, float]:
        return self._impl.weights()

    def add(self, key: str, weight: float) -> None:
        self._impl.add(key, weight)
        if self.is_smooth and len(self._impl) > self._smooth_limit:
            self._impl = DeadlinePicker(self._impl.weights(), self._burst)

    def remove(self, key: str) -> None:
        self._impl.remove(key)
        # Switch back only well below the limit, so a pool hovering at it does not flap.
        if not self.is_smooth and len(self._impl) <= self._smooth_limit // 2:
            self._impl = SmoothWeightedPicker(self._impl.weights())

    def pick(self, cost: int = 1, exclude: Exclude = None) -> str | None:
        return self._impl.pick(cost, exclude)

    def end_burst(self) -> None:
        if isinstance(self._impl, DeadlinePicker):
            self._impl.end_burst()
