"""A bounded window of recently seen packet ids."""

from __future__ import annotations

from collections.abc import Iterator


class DedupeWindow:
    """Remembers the last `capacity` distinct ids; the oldest is forgotten first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._seen: dict[str, None] = {}
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: object) -> bool:
        return key in self._seen

    def __iter__(self) -> Iterator[str]:
        return iter(self._seen)

    def add(self, key: str) -> bool:
        """Record `key`; True if it was not in the window (a first delivery)."""
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self.capacity:
            del self._seen[next(iter(self._seen))]
            self.evicted += 1
        return True
