"""What the distributor shows of itself: analyzer rows, the registry's pages, `/status`."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from typing import Any

from logdist.config import DistributorConfig
from logdist.core import paging
from logdist.core.registry import AdminState, Analyzer, Health, Registry
from logdist.distributor.control.cluster import Cluster
from logdist.distributor.control.emitters import EmitterDirectory
from logdist.distributor.observe.counters import Counters
from logdist.distributor.observe.meter import ControlMeter
from logdist.distributor.routing.dispatcher import Dispatcher
from logdist.distributor.routing.health import HealthChecker
from logdist.distributor.storage.deadletters import DeadLetterStore
from logdist.distributor.storage.spool import Spool
from logdist.errors import InvalidRequest

# Up to this many analyzers /status lists every one; past it, STATUS_TOP unhealthy ones and
# STATUS_TOP of the largest shares.
STATUS_ANALYZERS = 50
STATUS_TOP = 8
HEALTHS = tuple(h.value for h in Health)


class Views:
    def __init__(
        self,
        cfg: DistributorConfig,
        now: Callable[[], float],
        registry: Registry,
        counters: Counters,
        dispatcher: Dispatcher,
        health: HealthChecker,
        emitters: EmitterDirectory,
        dead_letters: DeadLetterStore,
        control: ControlMeter,
        spool: Spool | None,
        cluster: Cluster | None,
    ) -> None:
        self.cfg = cfg
        self._now = now
        self.started = now()
        self.registry = registry
        self.counters = counters
        self.dispatcher = dispatcher
        self.health = health
        self.emitters = emitters
        self.dead_letters = dead_letters
        self.control = control
        self.spool = spool
        self.cluster = cluster
        self._sorted: list[str] | None = None
        self._summary: tuple[float, tuple[list[dict[str, Any]], dict[str, Any]]] | None = None

    def pool_changed(self) -> None:
        """An analyzer was added or removed: the paging order is made again."""
        self._sorted = None

    def row(self, analyzer: Analyzer) -> dict[str, Any]:
        delivered = self.counters.delivered_messages
        stats = self.counters.analyzer(analyzer.id)
        row = analyzer.to_json(self.registry.target_share(analyzer))
        row["delivered_packets"] = stats.packets
        row["delivered_messages"] = stats.messages
        row["actual_share"] = stats.messages / delivered if delivered else 0.0
        row["outbox"] = self.dispatcher.outbox_depth(analyzer.id)
        row["requests"] = stats.requests
        row["failures"] = stats.failures
        return row

    def analyzers_json(self) -> list[dict[str, Any]]:
        return [self.row(a) for a in self.registry]

    def analyzer_json(self, aid: str) -> dict[str, Any]:
        return self.row(self.registry.get(aid))

    def analyzer_ids(self) -> list[str]:
        """Analyzer ids in order, for paging (kept until one is added or removed)."""
        if self._sorted is None:
            self._sorted = sorted(a.id for a in self.registry)
        return self._sorted

    def registry_page(
        self,
        q: str | None = None,
        health: str | None = None,
        limit: int = paging.PAGE_DEFAULT,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Analyzers by id: those whose id contains `q` and of `health`, `limit` after
        `cursor`."""
        if health is not None and health not in HEALTHS:
            raise InvalidRequest(
                f"health must be one of {', '.join(HEALTHS)}, got {health!r}", {"field": "health"}
            )
        registry = self.registry

        def row(aid: str) -> dict[str, Any] | None:
            if aid not in registry or (q and q not in aid):
                return None
            analyzer = registry.get(aid)
            if health is not None and analyzer.health.value != health:
                return None
            return self.row(analyzer)

        rows, after = paging.page(self.analyzer_ids(), row, limit, cursor)
        return paging.answer("analyzers", rows, len(registry), after)

    def analyzers_view(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """What /status says of the analyzers: every row while there are a few dozen; past
        that, the unhealthy ones first and then the largest target shares (a few of each),
        with counts by health and state. Computed at most once a second for a large pool."""
        registry = self.registry
        now = self._now()
        if len(registry) > STATUS_ANALYZERS and self._summary is not None:
            at, view = self._summary
            if now - at < 1.0:
                return view
        by_health = {h.value: 0 for h in Health}
        by_state = {s.value: 0 for s in AdminState}
        unhealthy: list[Analyzer] = []
        for a in registry:
            by_health[a.health.value] += 1
            by_state[a.admin.value] += 1
            if a.health is not Health.UP and len(unhealthy) < STATUS_TOP:
                unhealthy.append(a)
        summary: dict[str, Any] = {
            "total": len(registry),
            "health": by_health,
            "state": by_state,
            "routable": registry.routable_count,
        }
        if len(registry) <= STATUS_ANALYZERS:
            rows = self.analyzers_json()
            summary["shown"] = "all"
        else:
            largest = heapq.nlargest(STATUS_TOP, registry, key=registry.target_share)
            chosen = {a.id: a for a in unhealthy}
            chosen.update((a.id, a) for a in largest if a.id not in chosen)
            rows = [self.row(a) for a in chosen.values()]
            summary["shown"] = "unhealthy first, then the largest shares"
            self._summary = (now, (rows, summary))
        return rows, summary

    def status(self) -> dict[str, Any]:
        d = self.dispatcher
        analyzers, analyzer_summary = self.analyzers_view()
        return {
            "uptime": round(self._now() - self.started, 3),
            "time": time.time(),
            "queue": {
                "depth": d.queued,
                "capacity": self.cfg.queue_capacity,
                "unacked": d.unacked,
                "backing_off": d.backing_off,
                # Emitters with packets waiting: the lanes the queue takes turns between.
                "emitters_waiting": d.queue.waiting_emitters(),
            },
            "analyzers": analyzers,
            "analyzer_summary": analyzer_summary,
            "health": self.health.to_json(),
            # Fair admission: what is held against the budget, the fair share, who is refused.
            "fairness": d.shares.to_json(),
            "emitters": self.emitters.status_rows(),
            "emitter_summary": self.emitters.summary(),
            "counters": self.counters.to_json(),
            "spool": self.spool.to_json() if self.spool is not None else None,
            "cluster": self.cluster.summary() if self.cluster is not None else None,
            "dead_letters": self.dead_letters.to_json(),
            "control_plane": {"seconds": self.control.to_json()},
        }
