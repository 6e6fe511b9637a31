"""The analyzer registry: ids, urls, weights, admin state, health, and who may take a packet."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from logdist.core.backoff import Backoff
from logdist.core.checks import check_id
from logdist.core.delivery import Delivery, check_url_for
from logdist.core.picker import Exclude, WeightedPicker, check_weight
from logdist.errors import AnalyzerExists, UnknownAnalyzer

DEFAULT_DELIVERY = Delivery()
# Seconds before an analyzer with passive health is tried again after it went down: doubled
# each time it fails its trial, up to the cap.
PASSIVE_RETRY_BASE = 0.25
PASSIVE_RETRY_CAP = 5.0
PASSIVE_RETRY = Backoff(base=PASSIVE_RETRY_BASE, cap=PASSIVE_RETRY_CAP, jitter=0.0)


# In a pool past the smooth picker's limit, the messages an analyzer takes in a row once its
# turn comes (see DeadlinePicker): thousands of analyzers each given one packet at a time
# would each need a forward per packet; this way a forward carries up to this many.
BURST = 64


class Health(StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


class AdminState(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"
    DRAINING = "draining"


@dataclass(slots=True)
class Analyzer:
    id: str
    url: str
    weight: float
    admin: AdminState = AdminState.ENABLED
    health: Health = Health.UNKNOWN
    successes: int = 0
    failures: int = 0
    forward_failures: int = 0
    # Times it was marked down (HAProxy's "Dwn" column).
    downs: int = 0
    pending: int = 0
    # When it last had `max_pending` packets or more (None: it has room), and when a request
    # to it last settled; together they tell a busy analyzer from a stalled one.
    full_since: float | None = None
    last_progress: float = 0.0
    stalled: bool = False
    # What its /health answer said (format `auto` batches only if it did).
    batch: bool = False
    # Its /health answer said it keeps a store: searches ask it (and name it when it is down).
    store: bool = False
    # Its /health answer said it takes OTLP requests as they came (a logdist analyzer does):
    # format `auto` sends them so, and it converts them, not the distributor.
    otlp: bool = False
    last_error: str | None = None
    changed_at: float = 0.0
    delivery: Delivery = DEFAULT_DELIVERY
    # Passive health: being tried again (it takes packets; one failed forward and it is down
    # again, `rise` good ones and it is up), and times it went down since it was last up.
    trial: bool = False
    down_streak: int = 0
    # It answered 429: it takes nothing new until its Retry-After has passed.
    held: bool = False

    @property
    def routable(self) -> bool:
        """Enabled and healthy (or on trial): it may be given new packets when it has room."""
        return self.admin is AdminState.ENABLED and (self.health is Health.UP or self.trial)

    @property
    def batches(self) -> bool:
        """Its forwards carry batches (NDJSON, a JSON array, its protocol's), not one packet
        each."""
        fmt = self.delivery.format
        return fmt != "json" and (fmt != "auto" or self.batch)

    def to_json(self, target_share: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "weight": self.weight,
            "state": self.admin.value,
            "enabled": self.admin is AdminState.ENABLED,
            "health": self.health.value,
            "healthy": self.health is Health.UP,
            "batch": self.batches,
            "store": self.store,
            "takes_otlp": self.otlp,
            **self.delivery.to_json(),
            "pending": self.pending,
            "drained": self.admin is AdminState.DRAINING and self.pending == 0,
            "consecutive_failures": max(self.failures, self.forward_failures),
            "last_error": self.last_error,
            "downs": self.downs,
            "target_share": target_share,
        }


@dataclass(frozen=True)
class HealthChange:
    analyzer: str
    old: Health
    new: Health
    reason: str


class Registry:
    """Every analyzer the distributor knows, and the picker over those that may take packets.

    An analyzer is in the picker while it is routable and not stalled. One that holds
    `max_pending` unacknowledged packets is *full*: its turn still comes, and the dispatcher
    waits for its room, so shares hold when every analyzer is busy. One that stays full and
    settles nothing for `stall_after` seconds is *stalled* and leaves the picker until a
    request to it settles, so a hung analyzer cannot stall the others.

    Health follows HAProxy's `rise`/`fall`: `fall` consecutive failed probes, or `fall`
    consecutive failed forwards, mark it down; `rise` consecutive good probes bring it back;
    an analyzer never checked yet is up after its first good probe.
    """

    def __init__(
        self,
        *,
        now: Callable[[], float],
        rise: int = 2,
        fall: int = 3,
        max_pending: int = 1024,
        smooth_limit: int = 32,
        stall_after: float = 1.0,
    ) -> None:
        if rise < 1 or fall < 1 or max_pending < 1:
            raise ValueError("rise, fall and max_pending must be >= 1")
        self._now = now
        self.rise = rise
        self.fall = fall
        self.max_pending = max_pending
        self.stall_after = stall_after
        self._analyzers: dict[str, Analyzer] = {}
        self._picker = WeightedPicker(smooth_limit, BURST)
        self._routable_weight = 0.0
        # Each routable analyzer's weight as counted in `_routable_weight`.
        self._counted: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._analyzers)

    def __iter__(self) -> Iterator[Analyzer]:
        return iter(list(self._analyzers.values()))

    def __contains__(self, aid: object) -> bool:
        return aid in self._analyzers

    def get(self, aid: str) -> Analyzer:
        try:
            return self._analyzers[aid]
        except KeyError:
            raise UnknownAnalyzer(
                f"no analyzer {aid!r}", {"known": sorted(self._analyzers)}
            ) from None

    def add(
        self, aid: str, url: str, weight: float, delivery: Delivery = DEFAULT_DELIVERY
    ) -> Analyzer:
        check_id("analyzer", aid)
        check_url_for(delivery.format, url)
        w = check_weight(weight)
        if aid in self._analyzers:
            raise AnalyzerExists(f"analyzer {aid!r} already exists", self._analyzers[aid].url)
        analyzer = Analyzer(id=aid, url=url, weight=w, changed_at=self._now(), delivery=delivery)
        self._analyzers[aid] = analyzer
        if delivery.passive:
            # Nothing probes it: it is tried at once, and its first good forward brings it up.
            analyzer.trial = True
            self._sync(analyzer)
            self._reweigh(analyzer)
        return analyzer

    def set_delivery(self, aid: str, delivery: Delivery) -> Analyzer:
        """New delivery settings, used from the next forward (and probe) on."""
        analyzer = self.get(aid)
        check_url_for(delivery.format, analyzer.url)
        was_passive = analyzer.delivery.passive
        analyzer.delivery = delivery
        if delivery.passive and not was_passive and analyzer.health is not Health.UP:
            analyzer.trial = True
        elif was_passive and not delivery.passive:
            # Probes judge it from now on; until the first one it keeps what it had.
            analyzer.trial = False
        self._sync(analyzer)
        self._reweigh(analyzer)
        return analyzer

    def remove(self, aid: str) -> Analyzer:
        analyzer = self.get(aid)
        del self._analyzers[aid]
        self._sync(analyzer, removed=True)
        self._reweigh(analyzer, removed=True)
        return analyzer

    def set_weight(self, aid: str, weight: float) -> Analyzer:
        analyzer = self.get(aid)
        analyzer.weight = check_weight(weight)
        if aid in self._picker:
            self._picker.add(aid, analyzer.weight)
        self._reweigh(analyzer)
        return analyzer

    def set_admin(self, aid: str, state: AdminState) -> Analyzer:
        analyzer = self.get(aid)
        if analyzer.admin is not state:
            analyzer.admin = state
            analyzer.changed_at = self._now()
            self._sync(analyzer)
            self._reweigh(analyzer)
        return analyzer

    def record_success(
        self,
        aid: str,
        *,
        batch: bool | None = None,
        store: bool | None = None,
        otlp: bool | None = None,
        passive: bool = False,
    ) -> HealthChange | None:
        """A probe (or, `passive`, a forward) to `aid` succeeded.

        `batch` is what the probe's answer said the analyzer accepts, `store` whether it
        said it keeps a store, `otlp` whether it takes OTLP as it came.
        """
        analyzer = self._analyzers.get(aid)
        if analyzer is None:
            return None
        if passive:
            analyzer.forward_failures = 0
            if not analyzer.delivery.passive or analyzer.health is Health.UP:
                return None
        elif analyzer.delivery.passive:
            return None  # a probe that was under way when it turned passive
        if batch is not None:
            analyzer.batch = batch
        if store is not None:
            analyzer.store = store
        if otlp is not None:
            analyzer.otlp = otlp
        analyzer.failures = 0
        analyzer.successes += 1
        if analyzer.health is Health.UP:
            return None
        first = analyzer.health is Health.UNKNOWN and analyzer.downs == 0
        if first or analyzer.successes >= self.rise:
            analyzer.forward_failures = 0
            analyzer.trial = False
            analyzer.down_streak = 0
            what = "forwards" if passive else "probes"
            return self._set_health(analyzer, Health.UP, f"{analyzer.successes} ok {what}")
        return None

    def record_failure(
        self, aid: str, reason: str, *, passive: bool = False
    ) -> HealthChange | None:
        """A probe (or, `passive`, a forward) to `aid` failed for `reason`.

        Probe and forward failures are counted apart, as HAProxy's checks and its `observe`
        error limit are: an analyzer whose /health answers while its ingest fails still goes
        down after `fall` failed forwards in a row, and then needs `rise` good probes.
        """
        analyzer = self._analyzers.get(aid)
        if analyzer is None:
            return None
        analyzer.last_error = reason
        if passive:
            analyzer.forward_failures += 1
            count = analyzer.forward_failures
        else:
            analyzer.failures += 1
            count = analyzer.failures
        analyzer.successes = 0
        if passive and analyzer.trial and analyzer.health is not Health.UP:
            # A trial of passive health ends at its first failed forward.
            analyzer.trial = False
            analyzer.down_streak += 1
            return self._set_health(analyzer, Health.DOWN, reason)
        if analyzer.health is not Health.DOWN and count >= self.fall:
            if analyzer.delivery.passive:
                analyzer.down_streak += 1
            return self._set_health(analyzer, Health.DOWN, reason)
        return None

    def retry_delay(self, aid: str) -> float | None:
        """Seconds until an analyzer with passive health that is down is tried again; None if
        it is not one."""
        analyzer = self._analyzers.get(aid)
        if analyzer is None or not analyzer.delivery.passive or analyzer.health is not Health.DOWN:
            return None
        streak = max(1, analyzer.down_streak)
        return PASSIVE_RETRY.delay(streak, lambda: 0.0)

    def try_again(self, aid: str) -> HealthChange | None:
        """Put a down analyzer with passive health on trial: it takes packets again."""
        analyzer = self._analyzers.get(aid)
        if analyzer is None or not analyzer.delivery.passive or analyzer.health is not Health.DOWN:
            return None
        analyzer.trial = True
        analyzer.successes = 0
        analyzer.forward_failures = 0
        return self._set_health(analyzer, Health.UNKNOWN, "passive retry")

    def hold(self, aid: str, held: bool) -> None:
        """While `held` (it answered 429), an analyzer takes nothing new."""
        analyzer = self._analyzers.get(aid)
        if analyzer is not None and analyzer.held != held:
            analyzer.held = held
            self._sync(analyzer)

    def _set_health(self, analyzer: Analyzer, health: Health, reason: str) -> HealthChange:
        change = HealthChange(analyzer.id, analyzer.health, health, reason)
        analyzer.health = health
        if health is Health.UP:
            analyzer.last_error = None
        elif health is Health.DOWN:
            analyzer.downs += 1
        analyzer.changed_at = self._now()
        self._sync(analyzer)
        self._reweigh(analyzer)
        return change

    def assign(self, cost: int, exclude: Exclude = None, packets: int = 1) -> Analyzer | None:
        """Pick the analyzer for `packets` packets of `cost` messages, counted pending there.

        `exclude` is an analyzer that just failed this packet, or those that refused it: they
        are passed over while another one can take the packet.
        """
        aid = self._picker.pick(cost, exclude)
        if aid is None:
            return None
        analyzer = self._analyzers[aid]
        analyzer.pending += packets
        if analyzer.pending >= self.max_pending:
            self._picker.end_burst()
            if analyzer.full_since is None:
                analyzer.full_since = self._now()
        return analyzer

    def full(self, analyzer: Analyzer) -> bool:
        """It holds `max_pending` or more unsettled packets: give it nothing until it has room."""
        return analyzer.pending >= self.max_pending

    def release(self, aid: str, packets: int = 1, *, settled: bool = True) -> None:
        """`packets` assigned to `aid` left it: a request settled (acknowledged or failed), or
        with `settled=False` they were taken back unsent."""
        analyzer = self._analyzers.get(aid)
        if analyzer is None:
            return
        analyzer.pending = max(0, analyzer.pending - packets)
        if analyzer.pending < self.max_pending:
            analyzer.full_since = None
        if settled:
            analyzer.last_progress = self._now()
            if analyzer.stalled:
                analyzer.stalled = False
                self._sync(analyzer)

    def check_stall(self, analyzer: Analyzer) -> bool:
        """True, and it leaves the picker, when it is full and nothing of it settled for
        `stall_after` seconds (while merely busy, it keeps its turn)."""
        if analyzer.stalled:
            return True
        if analyzer.full_since is None:
            return False
        quiet = self._now() - max(analyzer.full_since, analyzer.last_progress)
        if quiet < self.stall_after:
            return False
        analyzer.stalled = True
        self._sync(analyzer)
        return True

    @property
    def routable_count(self) -> int:
        """Analyzers enabled and healthy (or on trial) now."""
        return len(self._counted)

    def has_room(self) -> bool:
        """True while some analyzer can be given a packet now."""
        return len(self._picker) > 0

    def target_share(self, analyzer: Analyzer) -> float:
        """Its share of messages by weight if routable, else 0."""
        total = self._routable_weight
        return analyzer.weight / total if analyzer.routable and total > 0 else 0.0

    def target_shares(self) -> dict[str, float]:
        return {a.id: self.target_share(a) for a in self._analyzers.values()}

    def to_json(self) -> list[dict[str, Any]]:
        return [a.to_json(self.target_share(a)) for a in self._analyzers.values()]

    def _sync(self, analyzer: Analyzer, *, removed: bool = False) -> None:
        wanted = not removed and analyzer.routable and not analyzer.stalled and not analyzer.held
        if wanted and analyzer.id not in self._picker:
            self._picker.add(analyzer.id, analyzer.weight)
        elif not wanted and analyzer.id in self._picker:
            self._picker.remove(analyzer.id)

    def _reweigh(self, analyzer: Analyzer, *, removed: bool = False) -> None:
        """Keep the routable weight total in step with `analyzer`, in O(1)."""
        counted = 0.0 if removed or not analyzer.routable else analyzer.weight
        self._routable_weight += counted - self._counted.get(analyzer.id, 0.0)
        if counted:
            self._counted[analyzer.id] = counted
        else:
            self._counted.pop(analyzer.id, None)
        if not self._counted:
            self._routable_weight = 0.0  # no float drift left over once nothing is routable
