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
