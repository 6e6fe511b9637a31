"""A bounded window of recently seen packet ids."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator


class DedupeWindow:
    """Remembers the last `capacity` distinct ids; the oldest is forgotten first.

    A set answers "seen?" and a deque keeps arrival order, so forgetting the oldest is O(1)
    (a dict's first key is not: after many deletions from its front, finding it walks over
    every deleted slot until the next resize).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._seen: set[str] = set()
        self._order: deque[str] = deque()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: object) -> bool:
        return key in self._seen

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def add(self, key: str) -> bool:
        """Record `key`; True if it was not in the window (a first delivery)."""
        if key in self._seen:
            return False
        self._seen.add(key)
        self._order.append(key)
        if len(self._order) > self.capacity:
            self._seen.discard(self._order.popleft())
            self.evicted += 1
        return True

    def add_all(self, keys: list[str]) -> bool:
        """Record `keys` at once if all are first deliveries (none in the window, no repeats
        among them), in C-level set and deque calls; else record nothing and return False
        (then `add` them one by one, to learn which are new)."""
        seen = self._seen
        if not seen.isdisjoint(keys):
            return False
        before = len(seen)
        seen.update(keys)
        if len(seen) - before != len(keys):  # a key repeated among them: none were seen
            seen.difference_update(keys)
            return False
        order = self._order
        order.extend(keys)
        excess = len(order) - self.capacity
        if excess > 0:
            popleft = order.popleft
            seen.difference_update([popleft() for _ in range(excess)])
            self.evicted += excess
        return True
