"""The distributor's parts wired together, and the admin operations on them."""

from __future__ import annotations

import asyncio
import errno
import heapq
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from logdist.config import DistributorConfig
from logdist.core import paging
from logdist.core.checks import check_id, check_url, control_url
from logdist.core.delivery import Delivery
from logdist.core.picker import check_weight
from logdist.core.registry import AdminState, Analyzer, Health, Registry
from logdist.distributor.control.bucket import Row, Watcher
from logdist.distributor.control.cluster import Cluster
from logdist.distributor.control.emitters import EmitterDirectory, EmitterInfo
from logdist.distributor.observe.counters import Counters
from logdist.distributor.observe.logs import LogHub
from logdist.distributor.observe.meter import ControlMeter
from logdist.distributor.observe.metrics import Metrics
from logdist.distributor.routing.dispatcher import Dispatcher
from logdist.distributor.routing.health import HealthChecker
from logdist.distributor.storage.deadletters import DeadLetterStore
from logdist.distributor.storage.spool import Spool
from logdist.distributor.storage.state import StateStore, analyzer_of, analyzer_row
from logdist.errors import (
    AnalyzerExists,
    Backpressure,
    DeadLettersFull,
    InvalidRequest,
    SpoolFailure,
    UnknownAnalyzer,
)
from logdist.events import event
from logdist.formats.packet import Packet, total

log = logging.getLogger("logdist.distributor")

# Up to this many analyzers /status lists every one; past it, STATUS_TOP unhealthy ones and
# STATUS_TOP of the largest shares.
STATUS_ANALYZERS = 50
STATUS_TOP = 8
HEALTHS = tuple(h.value for h in Health)


class Distributor:
    def __init__(self, cfg: DistributorConfig, now: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self._now = now
        self.started = now()
        self.counters = Counters()
        self.registry = Registry(
            now=now, rise=cfg.health.rise, fall=cfg.health.fall, max_pending=cfg.max_pending
        )
        self.state = StateStore(cfg.state_dir) if cfg.state_dir else None
        saved = self.state.load() if self.state else None
        if cfg.cluster.servers:
            pass  # the control bucket says which analyzers there are (Cluster.start)
        elif saved is None:
            for ref in cfg.analyzers:
                self.registry.add(ref.id, ref.url, ref.weight, ref.delivery)
        else:
            for ref, admin in saved:
                self.registry.add(ref.id, ref.url, ref.weight, ref.delivery)
                self.registry.set_admin(ref.id, admin)
            event(
                log,
                "state_restored",
                path=self.state.path if self.state else "",
                analyzers=len(saved),
            )
        self.logs = LogHub(cfg.log_buffer)
        self.metrics = Metrics(self)
        self.dispatcher = Dispatcher(cfg, self.registry, self.counters, now, self._delivered)
        self.dead_letters = DeadLetterStore(
            cfg.dead_letter_path, cfg.dead_letter_max_bytes, cfg.fsync
        )
        self.dead_letters.load()
        self.dispatcher.on_dead_letter = self._dead_letter
        self._ticker: asyncio.Task[None] | None = None
        self.health = HealthChecker(cfg.health, self.registry, self.dispatcher.health_changed)
        self.control = ControlMeter()
        self.emitters = EmitterDirectory(
            now, cfg.emitter_networks, cfg.emitter_lease, cfg.emitter_forget, self.control
        )
        self._sweeper: asyncio.Task[None] | None = None
        self._sorted_analyzers: list[str] | None = None
        self._analyzers_view: tuple[float, tuple[list[dict[str, Any]], dict[str, Any]]] | None = (
            None
        )
        self._session: aiohttp.ClientSession | None = None
        self.cluster: Cluster | None = None
        self._removing: dict[str, asyncio.Task[dict[str, Any]]] = {}
        if cfg.cluster.servers:
            self.cluster = Cluster(
                cfg.cluster,
                cfg.id,
                self._room,
                self._fetched,
                cfg.retry_after,
                url=f"http://{cfg.host}:{cfg.port}",
            )
            self.cluster.seed = [analyzer_row(ref) for ref in cfg.analyzers]
            self.cluster.watcher = Watcher(
                self._apply_analyzer, self._apply_removal, self._apply_emitter
            )
            self.dispatcher.on_room.append(self.cluster.room)
        self.spool: Spool | None = None
        if cfg.spool_dir:
            self.spool = Spool(
                cfg.spool_dir,
                cfg.spool_max_bytes,
                cfg.spool_segment_bytes,
                cfg.fsync,
                cfg.retry_after,
            )
            replay = self.spool.recover()
            self.counters.replayed = len(replay)
            self.dispatcher.enqueue(replay, replayed=True)

    def accept_now(self, packets: list[Packet]) -> Awaitable[None] | None:
        """Own `packets` (room checked, spooled if there is a spool, queued), without a task:
        done at once unless the spool must sync before the 202.

        Returns what to await before answering in that case (the packets are queued once the
        sync is done), else None (they are queued already). In cluster mode the packets go
        to the JetStream stream (whose size is the room), and what to await is its
        acknowledgement; this replica, or another, fetches them from there.
        """
        if self.cluster is not None:
            return self._published(packets)
        self.dispatcher.check_room(total(packets))
        if self.dead_letters.full:
            raise self._dead_letters_full()
        if self.spool is None:
            self.dispatcher.enqueue(packets)
            self.emitters.saw(packets)
            return None
        try:
            self.spool.write(packets)
        except OSError as exc:
            raise self._spool_failed(exc) from None
        if self.spool.fsync != "always":
            self.dispatcher.enqueue(packets)
            self.emitters.saw(packets)
            return None
        return self._synced(packets)

    def _published(self, packets: list[Packet]) -> Awaitable[None]:
        assert self.cluster is not None
        if self.dead_letters.full:
            raise self._dead_letters_full()
        sent = self.cluster.publish(packets)

        async def published() -> None:
            await sent
            count = total(packets)
            self.counters.received_packets += count
            self.counters.received_messages += sum(p.messages for p in packets)
            self.emitters.saw(packets)

        return published()

    def _fetched(self, packets: list[Packet]) -> None:
        """Packets this replica fetched from the stream: route them (counted where accepted)."""
        self.dispatcher.enqueue(packets, replayed=True)

    def _room(self) -> int:
        return self.cfg.queue_capacity - self.dispatcher.queued

    async def _synced(self, packets: list[Packet]) -> None:
        assert self.spool is not None
        try:
            await self.spool.sync()
        except OSError as exc:
            # Refused: the client keeps them and retries, so the spool need not hold them.
            self.spool.ack(packets)
            raise self._spool_failed(exc) from None
        self.dispatcher.enqueue(packets)
        self.emitters.saw(packets)

    def _spool_failed(self, exc: OSError) -> SpoolFailure:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):  # a full disk: the spool said so once
            event(log, "spool_write_failed", logging.ERROR, error=exc)
        return SpoolFailure(
            f"the spool could not be written ({exc.strerror}); retry later",
            retry_after=self.cfg.retry_after,
        )

    def _dead_letters_full(self) -> Backpressure:
        store = self.dead_letters
        return DeadLettersFull(
            f"the dead letters are full ({store.bytes} of {store.max_bytes} bytes):"
            " replay or purge them (logdist ctl dead-letters); retry later",
            retry_after=self.cfg.retry_after,
            detail={"count": len(store.letters), "bytes": store.bytes},
        )

    def _dead_letter(self, packet: Packet) -> bool:
        """Keep a packet refused too often; False (and it stays queued) if it cannot be."""
        try:
            letter = self.dead_letters.add(packet)
        except OSError as exc:
            event(log, "dead_letter_write_failed", logging.ERROR, packet=packet.id, error=exc)
            return False
        if self.spool is not None:
            self.spool.ack([packet])
        # In cluster mode its stream message stays unacknowledged (kept alive) until the
        # dead letter is replayed and delivered, or purged: if this replica dies, another
        # gets the packet again rather than losing it with this one's memory.
        last = letter.refusals[-1]
        event(
            log,
            "dead_letter",
            logging.ERROR,
            packet=packet.id,
            emitter=packet.emitter,
            messages=packet.messages,
            analyzers=",".join(sorted({r.analyzer for r in letter.refusals})),
            status=last.status,
            kept=len(self.dead_letters.letters),
        )
        return True

    def _delivered(self, aid: str, packets: list[Packet], latency: float) -> None:
        if self.spool is not None:
            self.spool.ack(packets)
        if self.cluster is not None:
            self.cluster.settled(packets)
        self.logs.routed(aid, packets)
        self.metrics.observe_forward(aid, latency, len(self.registry))

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "distributor not started"
        return self._session

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
            skip_auto_headers=("User-Agent",),
        )
        self.dispatcher.start()
        self.health.start()
        if self.cluster is not None:
            await self.cluster.start()
        if self.spool is not None:
            self.spool.start()
        if self.dead_letters.path is not None and self.cfg.fsync == "interval":
            self._ticker = asyncio.get_running_loop().create_task(self._sync_dead_letters())
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_emitters())
        event(log, "started", analyzers=len(self.registry), queue_capacity=self.cfg.queue_capacity)

    async def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop_fetching()
        left = await self.dispatcher.drain(self.cfg.drain_timeout)
        if self.cluster is not None:
            # What was fetched and not delivered goes back to the stream for the others.
            await self.cluster.close()
            left = 0
        await self.health.stop()
        await self.dispatcher.stop()
        if self._session is not None:
            await self._session.close()
        if self.spool is not None:
            await self.spool.close()
        for task in (self._ticker, self._sweeper):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self.dead_letters.close()
        if self.state is not None:
            self.state.close()
        c = self.counters
        # With a spool what is left is kept for the next start; without one it is lost.
        kept, lost = (left, 0) if self.spool is not None else (0, left)
        event(
            log,
            "summary",
            logging.WARNING if lost else logging.INFO,
            received=c.received_packets,
            delivered=c.delivered_packets,
            retries=c.retries,
            replayed=c.replayed,
            kept_in_spool=kept,
            lost=lost,
            dead_letters=len(self.dead_letters.letters),
        )
        if self.dead_letters.path is None and self.dead_letters.letters:
            event(
                log,
                "dead_letters_lost",
                logging.WARNING,
                count=len(self.dead_letters.letters),
                reason="no spool, state or dead-letter dir: they were kept in memory only",
            )

    async def _sync_dead_letters(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                self.dead_letters.sync()
            except OSError as exc:
                event(log, "dead_letter_sync_failed", logging.ERROR, error=exc)

    # -- admin ----------------------------------------------------------------------------
    #
    # The HTTP admin calls come through the async methods below. Without a cluster they
    # change this distributor at once (and its state directory); in cluster mode they write
    # the control bucket, and every replica — this one too — applies the change from its
    # watch (`_apply_*`), with the same synchronous methods.

    async def admin_add(
        self, aid: str, url: str, weight: float, delivery: Delivery | None = None
    ) -> Analyzer:
        delivery = delivery or Delivery()
        if self.cluster is None:
            return self.add_analyzer(aid, url, weight, delivery)
        check_id("analyzer", aid)
        check_url(url)
        w = check_weight(weight)

        def add(row: Row | None) -> Row:
            if row is not None:
                raise AnalyzerExists(f"analyzer {aid!r} already exists", row.get("url"))
            return {
                "id": aid,
                "url": url,
                "weight": w,
                "state": AdminState.ENABLED.value,
                "delivery": delivery.to_state(),
            }

        await self.cluster.control.change_analyzer(aid, add)
        return self.registry.get(aid)

    async def admin_weight(self, aid: str, weight: float) -> Analyzer:
        if self.cluster is None:
            return self.set_weight(aid, weight)
        w = check_weight(weight)
        await self.cluster.control.change_analyzer(aid, self._changing(aid, weight=w))
        return self.registry.get(aid)

    async def admin_state(self, aid: str, state: AdminState) -> Analyzer:
        if self.cluster is None:
            return self.set_state(aid, state)
        await self.cluster.control.change_analyzer(aid, self._changing(aid, state=state.value))
        return self.registry.get(aid)

    async def admin_delivery(self, aid: str, delivery: Delivery) -> Analyzer:
        if self.cluster is None:
            return self.set_delivery(aid, delivery)
        change = self._changing(aid, delivery=delivery.to_state())
        await self.cluster.control.change_analyzer(aid, change)
        return self.registry.get(aid)

    async def admin_remove(self, aid: str) -> dict[str, Any]:
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

    def _changing(self, aid: str, **values: Any) -> Callable[[Row | None], Row]:
        def change(row: Row | None) -> Row:
            if row is None:
                raise UnknownAnalyzer(f"no analyzer {aid!r}", {"known": self._analyzer_ids()})
            return {**row, **values}

        return change

    def _apply_analyzer(self, row: Row) -> None:
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

    def _apply_removal(self, aid: str) -> None:
        if aid not in self.registry or aid in self._removing:
            return
        task = asyncio.get_running_loop().create_task(self.remove_analyzer(aid))
        self._removing[aid] = task
        task.add_done_callback(lambda _: self._removing.pop(aid, None))

    def _apply_emitter(self, row: Row) -> None:
        self.emitters.register(row["id"], row["url"], row.get("metrics"), row.get("peer"))

    async def admin_register(
        self, eid: object, url: object, metrics: object, peer: str | None
    ) -> EmitterInfo:
        """An emitter registers (or renews its lease); in cluster mode every replica learns
        it from the control bucket."""
        if self.cluster is None:
            return self.emitters.register(eid, url, metrics, peer)
        eid = check_id("emitter", eid)
        url = control_url(url, peer, self.emitters.networks).rstrip("/")
        row = {"id": eid, "url": url, "metrics": metrics, "peer": peer}
        await self.cluster.control.put_emitter(row)
        return EmitterInfo(eid, url, self._now(), self._now())

    def _changed(self, aid: str) -> None:
        if self.state is not None:
            self.state.record(self.registry, aid)

    def add_analyzer(
        self, aid: str, url: str, weight: float, delivery: Delivery | None = None
    ) -> Analyzer:
        analyzer = self.registry.add(aid, url, weight, delivery or Delivery())
        self._sorted_analyzers = None
        self.health.watch(aid)
        self._changed(aid)
        event(
            log,
            "analyzer_added",
            analyzer=aid,
            url=url,
            weight=analyzer.weight,
            **_described(analyzer.delivery),
        )
        self.dispatcher.wake()
        return analyzer

    def set_delivery(self, aid: str, delivery: Delivery) -> Analyzer:
        """New delivery settings for `aid`, used from its next forward and probe."""
        analyzer = self.registry.set_delivery(aid, delivery)
        self.dispatcher.wake()
        self._changed(aid)
        event(log, "analyzer_config", analyzer=aid, **_described(delivery))
        return analyzer

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

    async def remove_analyzer(self, aid: str) -> dict[str, Any]:
        """Take nothing new, let what `aid` holds finish (up to the forward timeout), remove it."""
        self.registry.set_admin(aid, AdminState.DRAINING)
        self.dispatcher.evacuate(aid)
        deadline = self._now() + self.cfg.forward_timeout + 1
        while self.registry.get(aid).pending and self._now() < deadline:
            await asyncio.sleep(0.02)
        left = self.registry.get(aid).pending
        self.registry.remove(aid)
        self._sorted_analyzers = None
        self.health.unwatch(aid)
        self.dispatcher.forget(aid)
        self._changed(aid)
        event(log, "analyzer_removed", analyzer=aid, unsettled=left)
        return {"removed": aid, "drained": left == 0}

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

    # -- views ----------------------------------------------------------------------------

    def _row(self, analyzer: Analyzer) -> dict[str, Any]:
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
        return [self._row(a) for a in self.registry]

    def _analyzer_ids(self) -> list[str]:
        """Analyzer ids in order, for paging (kept until one is added or removed)."""
        if self._sorted_analyzers is None:
            self._sorted_analyzers = sorted(a.id for a in self.registry)
        return self._sorted_analyzers

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
            return self._row(analyzer)

        rows, after = paging.page(self._analyzer_ids(), row, limit, cursor)
        return {"analyzers": rows, "total": len(registry), "next": after}

    def analyzers_view(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """What /status says of the analyzers: every row while there are a few dozen; past
        that, the unhealthy ones first and then the largest target shares (a few of each),
        with counts by health and state. Computed at most once a second for a large pool."""
        registry = self.registry
        now = self._now()
        if len(registry) > STATUS_ANALYZERS and self._analyzers_view is not None:
            at, view = self._analyzers_view
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
            rows = [self._row(a) for a in chosen.values()]
            summary["shown"] = "unhealthy first, then the largest shares"
            self._analyzers_view = (now, (rows, summary))
        return rows, summary

    def analyzer_json(self, aid: str) -> dict[str, Any]:
        return self._row(self.registry.get(aid))

    async def _sweep_emitters(self) -> None:
        """Forget emitters gone for long, every few seconds."""
        every = min(5.0, max(0.5, self.cfg.emitter_lease / 6))
        while True:
            await asyncio.sleep(every)
            self.emitters.sweep()

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
            },
            "analyzers": analyzers,
            "analyzer_summary": analyzer_summary,
            "health": self.health.to_json(),
            "emitters": self.emitters.status_rows(),
            "emitter_summary": self.emitters.summary(),
            "counters": self.counters.to_json(),
            "spool": self.spool.to_json() if self.spool is not None else None,
            "cluster": self.cluster.summary() if self.cluster is not None else None,
            "dead_letters": self.dead_letters.to_json(),
            "control_plane": {"seconds": self.control.to_json()},
        }


def _described(delivery: Delivery) -> dict[str, Any]:
    """Delivery settings for a log line: header names only, never their values."""
    return {
        "format": delivery.format,
        "headers": ",".join(name for name, _ in delivery.headers) or "-",
        "health": delivery.health,
        "health_url": delivery.health_url or "-",
        "compression": delivery.compression,
    }
