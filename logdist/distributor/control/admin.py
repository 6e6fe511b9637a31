"""The admin operations: analyzers added, weighted, enabled, drained and removed; emitters
registered; dead letters replayed and purged.

Without a cluster a call changes this distributor at once (and its state directory); in
cluster mode it writes the control bucket, and every replica, this one too, applies the
change from its watch (`apply_*`) through the same synchronous methods.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from logdist.config import DistributorConfig
from logdist.config.refs import AnalyzerRef, analyzer_of, analyzer_row
from logdist.core.checks import check_id, control_url
from logdist.core.delivery import Delivery, check_url_for
from logdist.core.picker import check_weight
from logdist.core.registry import AdminState, Analyzer, Registry
from logdist.distributor.control.bucket import Row, Watcher
from logdist.distributor.control.cluster import Cluster
from logdist.distributor.control.emitters import EmitterDirectory, EmitterInfo, check_secret
from logdist.distributor.routing.dispatcher import Dispatcher
from logdist.distributor.routing.health import HealthChecker
from logdist.distributor.storage.deadletters import DeadLetterStore
from logdist.distributor.storage.spool import Spool
from logdist.distributor.storage.state import StateStore
from logdist.errors import AnalyzerExists, SpoolFailure, UnknownAnalyzer
from logdist.events import event

log = logging.getLogger("logdist.distributor")


class Admin:
    def __init__(
        self,
        cfg: DistributorConfig,
        now: Callable[[], float],
        registry: Registry,
        dispatcher: Dispatcher,
        health: HealthChecker,
        emitters: EmitterDirectory,
        dead_letters: DeadLetterStore,
        state: StateStore | None,
        spool: Spool | None,
        cluster: Cluster | None,
        spool_failed: Callable[[OSError], SpoolFailure],
        pool_changed: Callable[[], None],
    ) -> None:
        self.cfg = cfg
        self._now = now
        self.registry = registry
        self.dispatcher = dispatcher
        self.health = health
        self.emitters = emitters
        self.dead_letters = dead_letters
        self.state = state
        self.spool = spool
        self.cluster = cluster
        self._spool_failed = spool_failed
        self._pool_changed = pool_changed
        self._removing: dict[str, asyncio.Task[dict[str, Any]]] = {}
        if cluster is not None:
            cluster.seed = [analyzer_row(ref) for ref in cfg.analyzers]
            cluster.watcher = Watcher(self.apply_analyzer, self.apply_removal, self.apply_emitter)

    # -- the HTTP admin calls -------------------------------------------------------------

    async def add(
        self, aid: str, url: str, weight: float, delivery: Delivery | None = None
    ) -> Analyzer:
        delivery = delivery or Delivery()
        if self.cluster is None:
            return self.add_analyzer(aid, url, weight, delivery)
        check_id("analyzer", aid)
        check_url_for(delivery.format, url)
        w = check_weight(weight)

        def add(row: Row | None) -> Row:
            if row is not None:
                raise AnalyzerExists(f"analyzer {aid!r} already exists", row.get("url"))
            return analyzer_row(AnalyzerRef(aid, url, w, delivery))

        await self.cluster.control.change_analyzer(aid, add)
        return self.registry.get(aid)

    async def weight(self, aid: str, weight: float) -> Analyzer:
        if self.cluster is None:
            return self.set_weight(aid, weight)
        w = check_weight(weight)
        await self.cluster.control.change_analyzer(aid, self._changing(aid, weight=w))
        return self.registry.get(aid)

    async def state_of(self, aid: str, state: AdminState) -> Analyzer:
        if self.cluster is None:
            return self.set_state(aid, state)
        await self.cluster.control.change_analyzer(aid, self._changing(aid, state=state.value))
        return self.registry.get(aid)

    async def delivery(self, aid: str, delivery: Delivery) -> Analyzer:
        if self.cluster is None:
            return self.set_delivery(aid, delivery)
        change = self._changing(aid, delivery=delivery.to_state())
        await self.cluster.control.change_analyzer(aid, change)
        return self.registry.get(aid)

    async def remove(self, aid: str) -> dict[str, Any]:
        if self.cluster is None:
            return await self.remove_analyzer(aid)

        def remove(row: Row | None) -> None:
            if row is None:
                raise UnknownAnalyzer(f"no analyzer {aid!r}")

        await self.cluster.control.change_analyzer(aid, remove)
        removing = self._removing.get(aid)
        if removing is not None:
            return await asyncio.shield(removing)
        return {"removed": aid, "drained": aid not in self.registry}

    async def register(
        self, eid: object, url: object, metrics: object, peer: str | None, secret: object = None
    ) -> EmitterInfo:
        """An emitter registers (or renews its lease); in cluster mode every replica learns
        it from the control bucket."""
        if self.cluster is None:
            return self.emitters.register(eid, url, metrics, peer, secret)
        eid = check_id("emitter", eid)
        url = control_url(url, peer, self.emitters.networks).rstrip("/")
        row = {
            "id": eid,
            "url": url,
            "metrics": metrics,
            "peer": peer,
            "secret": check_secret(secret),
        }
        await self.cluster.control.put_emitter(row)
        return EmitterInfo(eid, url, self._now(), self._now())

    def _changing(self, aid: str, **values: Any) -> Callable[[Row | None], Row]:
        def change(row: Row | None) -> Row:
            if row is None:
                known = sorted(a.id for a in self.registry)
                raise UnknownAnalyzer(f"no analyzer {aid!r}", {"known": known})
            return {**row, **values}

        return change

    # -- what the control bucket's watch applies ------------------------------------------

    def apply_analyzer(self, row: Row) -> None:
        """An analyzer's row from the control bucket: add it, or bring it to what it says."""
        ref, admin = analyzer_of(row)
        if ref.id not in self.registry:
            self.add_analyzer(ref.id, ref.url, ref.weight, ref.delivery)
            if admin is not AdminState.ENABLED:
                self.set_state(ref.id, admin)
            return
        analyzer = self.registry.get(ref.id)
        if analyzer.weight != ref.weight:
            self.set_weight(ref.id, ref.weight)
        if analyzer.delivery != ref.delivery:
            self.set_delivery(ref.id, ref.delivery)
        if analyzer.admin is not admin:
            self.set_state(ref.id, admin)

    def apply_removal(self, aid: str) -> None:
        if aid not in self.registry or aid in self._removing:
            return
        task = asyncio.get_running_loop().create_task(self.remove_analyzer(aid))
        self._removing[aid] = task
        task.add_done_callback(lambda _: self._removing.pop(aid, None))

    def apply_emitter(self, row: Row) -> None:
        self.emitters.register(
            row["id"], row["url"], row.get("metrics"), row.get("peer"), row.get("secret")
        )

    # -- the changes themselves -----------------------------------------------------------

    def _changed(self, aid: str) -> None:
        if self.state is not None:
            self.state.record(self.registry, aid)

    def add_analyzer(
        self, aid: str, url: str, weight: float, delivery: Delivery | None = None
    ) -> Analyzer:
        analyzer = self.registry.add(aid, url, weight, delivery or Delivery())
        self._pool_changed()
        self.health.watch(aid)
        self._changed(aid)
        event(
            log,
            "analyzer_added",
            analyzer=aid,
            url=url,
            weight=analyzer.weight,
            **described(analyzer.delivery),
        )
        self.dispatcher.wake()
        return analyzer

    def set_delivery(self, aid: str, delivery: Delivery) -> Analyzer:
        """New delivery settings for `aid`, used from its next forward and probe."""
        analyzer = self.registry.set_delivery(aid, delivery)
        self.dispatcher.wake()
        self._changed(aid)
        event(log, "analyzer_config", analyzer=aid, **described(delivery))
        return analyzer

    def set_weight(self, aid: str, weight: float) -> Analyzer:
        analyzer = self.registry.set_weight(aid, weight)
        self.dispatcher.wake()
        self._changed(aid)
        event(log, "analyzer_weight", analyzer=aid, weight=analyzer.weight)
        return analyzer

    def set_state(self, aid: str, state: AdminState) -> Analyzer:
        analyzer = self.registry.set_admin(aid, state)
        if state is not AdminState.ENABLED:
            self.dispatcher.evacuate(aid)
        self.dispatcher.wake()
        self._changed(aid)
        event(log, "analyzer_state", analyzer=aid, state=state.value)
        return analyzer

    async def remove_analyzer(self, aid: str) -> dict[str, Any]:
        """Take nothing new, let what `aid` holds finish (up to the forward timeout), remove it."""
        self.registry.set_admin(aid, AdminState.DRAINING)
        self.dispatcher.evacuate(aid)
        deadline = self._now() + self.cfg.forward_timeout + 1
        while self.registry.get(aid).pending and self._now() < deadline:
            await asyncio.sleep(0.02)
        left = self.registry.get(aid).pending
        self.registry.remove(aid)
        self._pool_changed()
        self.health.unwatch(aid)
        self.dispatcher.forget(aid)
        self._changed(aid)
        event(log, "analyzer_removed", analyzer=aid, unsettled=left)
        return {"removed": aid, "drained": left == 0}

    # -- dead letters ---------------------------------------------------------------------

    def replay_dead_letters(self, ids: list[str] | None) -> dict[str, Any]:
        """Put dead letters (all, or those named) back in the queue, as many as it has room
        for; they are spooled first when there is a spool."""
        letters = self.dead_letters.select(ids)
        room = max(0, self.cfg.queue_capacity - self.dispatcher.queued)
        taken = letters[:room]
        packets = self.dead_letters.packets(taken)
        if packets and self.spool is not None:
            try:
                self.spool.write(packets)
            except OSError as exc:
                raise self._spool_failed(exc) from None
        self.dead_letters.remove(taken)
        if packets:
            self.dispatcher.enqueue(packets, replayed=True)
        event(log, "dead_letters_replayed", count=len(taken), left=len(self.dead_letters.letters))
        return {
            "replayed": len(taken),
            "ids": [letter.id for letter in taken],
            "not_replayed": len(letters) - len(taken),
            "left": len(self.dead_letters.letters),
        }

    def purge_dead_letters(self, ids: list[str] | None) -> dict[str, Any]:
        letters = self.dead_letters.select(ids)
        if self.cluster is not None:
            self.cluster.settled(self.dead_letters.packets(letters))
        self.dead_letters.remove(letters)
        event(
            log,
            "dead_letters_purged",
            logging.WARNING,
            count=len(letters),
            messages=sum(letter.messages for letter in letters),
        )
        return {
            "purged": len(letters),
            "ids": [letter.id for letter in letters],
            "left": len(self.dead_letters.letters),
        }


def described(delivery: Delivery) -> dict[str, Any]:
    """Delivery settings for a log line: header names only, never their values."""
    return {
        "format": delivery.format,
        "headers": ",".join(name for name, _ in delivery.headers) or "-",
        "health": delivery.health,
        "health_url": delivery.health_url or "-",
        "compression": delivery.compression,
        **{k: ",".join(v) if isinstance(v, tuple) else v for k, v in delivery.options},
    }
