"""Who holds what of the distributor's packets, and fair admission over it.

Every packet the distributor owns (queued, or sent and not yet acknowledged) is held for its
emitter; a run from several emitters counts one for each of its packets' emitters. What the
distributor can hold is its queue's capacity and what the analyzers' pending windows hold
now. While it holds no more than `fair_share_above` of that (the budget), holding is all
there is: a dict update a packet, in and out. Past the budget, an emitter that already holds
some is admitted only within its max-min fair share (`core.fairness`) of what can be held
less a **reserve** — `RESERVE` packets for every other emitter heard from in the last
`ACTIVE_SECONDS`, so that each may always send one more — else answered 429 with
Retry-After. So a lone emitter still fills the queue (503 when full, as before), while a
burst beside a thousand quiet emitters stops short of it and leaves them room. The
fair-share trees are built when the budget is first passed and kept while the distributor
holds more than half of it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from logdist.config.tables import LimitsConfig
from logdist.core.fairness import FairShare
from logdist.distributor.routing.limits import Limits
from logdist.errors import Throttled
from logdist.events import event
from logdist.formats.packet import Packet

log = logging.getLogger("logdist.distributor")

# Packets kept free for each emitter heard from lately that holds nothing now.
RESERVE = 1
# An emitter is heard from lately for this long after its last admitted packet, counted in
# BUCKETS slices of a ring (O(1) a request, whatever the number of emitters).
ACTIVE_SECONDS = 10.0
BUCKETS = 10
# An emitter's spell of 429s ends once it has gone this many seconds without one.
SPELL_QUIET = 5.0
# The views list this many of the most refused emitters.
STATUS_TOP = 5


def by_emitter(packets: Iterable[Packet]) -> Counter[str | None]:
    """Packets by emitter (a run's packets each for its own)."""
    counts: Counter[str | None] = Counter()
    for p in packets:
        if p.emitters is not None:
            counts.update(p.emitters)
        else:
            counts[p.emitter] += p.count
    return counts


def one_emitter_each(packets: list[Packet]) -> list[Packet]:
    """`packets`, with each run of several emitters' packets as its packets (every one then
    of a single emitter); `packets` itself when there is no such run."""
    if not any(p.emitters for p in packets):
        return packets
    return [part for p in packets for part in (p.parts() if p.emitters else (p,))]


def counts_of(packets: list[Packet]) -> dict[str | None, int] | Counter[str | None]:
    if len(packets) == 1 and packets[0].emitters is None:
        return {packets[0].emitter: packets[0].count}
    return by_emitter(packets)


class Recent:
    """How many emitters were heard from in the last `ACTIVE_SECONDS`: a ring of buckets,
    each counting the emitters last heard from in it."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        self.width = ACTIVE_SECONDS / BUCKETS
        self.last: dict[str | None, int] = {}  # emitter -> the bucket it was last heard in
        self.ring = [0] * BUCKETS
        self.slot_of = [-1] * BUCKETS  # which bucket each slot counts now

    def _slot(self, bucket: int) -> int:
        slot = bucket % BUCKETS
        if self.slot_of[slot] != bucket:
            self.slot_of[slot], self.ring[slot] = bucket, 0
        return slot

    def heard(self, emitter: str | None) -> None:
        bucket = int(self.now() / self.width)
        old = self.last.get(emitter)
        if old == bucket:
            return
        if old is not None and self.slot_of[old % BUCKETS] == old:
            self.ring[old % BUCKETS] -= 1
        self.ring[self._slot(bucket)] += 1
        self.last[emitter] = bucket
        if len(self.last) > 4_000 and len(self.last) > 4 * self.count():
            self._forget(bucket)

    def count(self) -> int:
        bucket = int(self.now() / self.width)
        return sum(n for slot, n in enumerate(self.ring) if bucket - BUCKETS < self.slot_of[slot])

    def _forget(self, bucket: int) -> None:
        """Drop the emitters not heard from in the window (amortised: when they outnumber
        the heard ones four to one)."""
        self.last = {e: b for e, b in self.last.items() if bucket - b < BUCKETS}


class Shares:
    def __init__(
        self,
        capacity: Callable[[], int],
        above: float,
        retry_after: float,
        now: Callable[[], float] = time.monotonic,
        limits: Limits | None = None,
    ) -> None:
        # What the distributor can hold now (its queue and the analyzers' pending windows).
        self.capacity = capacity
        # 0: fairness off, every request admitted while there is room.
        self.above = above
        self.retry_after = retry_after
        self.holding: Counter[str | None] = Counter()
        self.held = 0
        self.recent = Recent(now)
        self.fair: FairShare | None = None  # the trees, while under pressure
        # Per-emitter rate limits, checked after the fair share (none unless given).
        self.limits = limits if limits is not None else Limits(LimitsConfig())
        self.throttled: Counter[str | None] = Counter()  # requests refused 429, by emitter
        # emitter -> [refused in this spell, when last]: the emitters being throttled now.
        self._throttling: dict[str | None, list[float]] = {}
        self._now = now

    # -- holding ---------------------------------------------------------------------------

    def took(self, packets: list[Packet]) -> None:
        if len(packets) == 1 and packets[0].emitters is None:  # the common case, kept lean
            self._add(packets[0].emitter, packets[0].count)
            return
        for emitter, n in by_emitter(packets).items():
            self._add(emitter, n)

    def split(self, packet: Packet, parts: int) -> None:
        """`packet` (one emitter's) became `parts` parts, each held until it settles."""
        self._add(packet.emitter, parts - 1)

    def settled(self, packets: list[Packet]) -> None:
        if len(packets) == 1 and packets[0].emitters is None:
            self._remove(packets[0].emitter, packets[0].count)
            return
        for emitter, n in by_emitter(packets).items():
            self._remove(emitter, n)

    def _add(self, emitter: str | None, n: int) -> None:
        self.holding[emitter] += n
        self.held += n
        if self.fair is not None:
            self.fair.add(emitter, n)

    def _remove(self, emitter: str | None, n: int) -> None:
        left = self.holding[emitter] - n
        if left > 0:
            self.holding[emitter] = left
        else:
            n += left  # what it held, at most
            self.holding.pop(emitter, None)
        self.held -= n
        if self.fair is not None:
            self.fair.remove(emitter, n)
            if self.held * 2 < self.capacity() * self.above:
                self.fair = None  # calm again: drop the trees

    # -- admitting -------------------------------------------------------------------------

    def share_of(self, capacity: int, budget: int) -> int:
        """What the fair shares divide past the budget: the capacity less a reserve for each
        other emitter heard from lately (never less than the budget)."""
        others = max(0, self.recent.count() - 1)
        return max(budget, capacity - RESERVE * others)

    def check(self, packets: list[Packet]) -> None:
        """Raise Throttled if an emitter of `packets` would hold more than its fair share, or
        is over its rate limit (`limits`)."""
        limits = self.limits
        if len(packets) == 1 and packets[0].emitters is None:
            # The common case, kept lean: one emitter's packet.
            p = packets[0]
            if self.above:
                self.recent.heard(p.emitter)
            if not self.above or self.held + p.count <= self.capacity() * self.above:
                if limits.active:
                    limits.check(packets, self.refused)
                return
        counts = counts_of(packets)
        if self.above:
            self._check_fair(counts)
        if limits.active:
            limits.check(packets, self.refused)

    def check_limits(self, packets: list[Packet]) -> None:
        """Only the rate limits (cluster mode: what a replica publishes to the stream)."""
        if self.limits.active:
            self.limits.check(packets, self.refused)

    def _check_fair(self, counts: dict[str | None, int] | Counter[str | None]) -> None:
        n = sum(counts.values())
        for emitter in counts:
            self.recent.heard(emitter)
        capacity = self.capacity()
        budget = int(capacity * self.above)
        if self.held + n <= budget:
            return
        fair = self.fair
        if fair is None or fair.capacity < capacity:
            # The trees, sized with room to grow (the capacity follows the windows in use):
            # made again only when it doubles.
            fair = self.fair = FairShare(2 * max(capacity, self.held, 1))
            for emitter, held in self.holding.items():
                fair.add(emitter, held)
        limit = self.share_of(capacity, budget)
        over = [e for e, k in counts.items() if not fair.within(e, k, limit)]
        if not over:
            return
        for emitter in over:
            self.refused(emitter, holding=self.holding.get(emitter, 0), held=self.held,
                         budget=budget)  # fmt: skip
        emitter = over[0]
        raise Throttled(
            f"emitter {emitter!r} holds more than its fair share of the distributor"
            f" ({self.holding.get(emitter, 0)} packets) while others send; keep the packets"
            " and retry",
            retry_after=self.retry_after,
            detail={"emitter": emitter, "holding": self.holding.get(emitter, 0)},
        )

    def refused(self, emitter: str | None, **why: Any) -> None:
        """Count a request of `emitter`'s refused 429; log when its spell of them begins."""
        self.throttled[emitter] += 1
        spell = self._throttling.get(emitter)
        if spell is None:
            event(log, "emitter_throttled", logging.WARNING, emitter=emitter, **why)
            spell = self._throttling[emitter] = [0, 0.0]
        spell[0] += 1
        spell[1] = self._now()

    def end_spells(self) -> int:
        """Log the end of each spell of refusals quiet for SPELL_QUIET seconds (called every
        few seconds: an emitter paced by its limit, refused and admitted in turn, is one
        spell, not a line each time); how many ended."""
        now = self._now()
        quiet = [e for e, (_, last) in self._throttling.items() if now - last >= SPELL_QUIET]
        for emitter in quiet:
            refused = int(self._throttling.pop(emitter)[0])
            event(log, "emitter_throttle_ended", emitter=emitter, refused=refused)
        return len(quiet)

    # -- views -----------------------------------------------------------------------------

    def fair_share(self) -> int | None:
        """Packets an emitter may hold now before it is refused 429 (its max-min share of
        what the others leave), or None while the distributor holds less than the budget."""
        capacity = self.capacity()
        budget = int(capacity * self.above)
        fair = self.fair
        if not self.above or fair is None or self.held <= budget:
            return None
        return fair.level(self.share_of(capacity, budget))

    def share(self, emitter: str | None) -> float:
        """The part of what the distributor holds that `emitter` holds."""
        return round(self.holding.get(emitter, 0) / self.held, 4) if self.held else 0.0

    def to_json(self) -> dict[str, Any]:
        capacity = self.capacity()
        return {
            "on": bool(self.above),
            "held": self.held,
            "can_hold": capacity,
            "budget": int(capacity * self.above) if self.above else None,
            "fair_share": self.fair_share(),
            "emitters_holding": len(self.holding),
            "throttling": len(self._throttling),
            "throttled": self.throttled.total(),
            "top_throttled": [
                {"id": e, "throttled": n} for e, n in self.throttled.most_common(STATUS_TOP)
            ],
        }
