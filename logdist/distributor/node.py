"""The composition root of the distributor: builds its parts, hands each only what it needs,
starts and stops them. The HTTP face (`web/`) and the inputs reach the parts through it."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable

import aiohttp

from logdist.config import DistributorConfig
from logdist.core.registry import Registry
from logdist.distributor.control.admin import Admin
from logdist.distributor.control.cluster import Cluster
from logdist.distributor.control.emitters import EmitterDirectory
from logdist.distributor.inputs.intake import Intake
from logdist.distributor.inputs.packets import Front
from logdist.distributor.inputs.parsing import ParseProcesses, default_workers
from logdist.distributor.inputs.syslog import SyslogListener
from logdist.distributor.observe.counters import Counters
from logdist.distributor.observe.logs import LogHub
from logdist.distributor.observe.meter import ControlMeter
from logdist.distributor.observe.metrics import Metrics, Sources
from logdist.distributor.observe.views import Views
from logdist.distributor.routing.dispatcher import Dispatcher
from logdist.distributor.routing.health import HealthChecker
from logdist.distributor.storage.deadletters import DeadLetterStore
from logdist.distributor.storage.spool import Spool
from logdist.distributor.storage.state import StateStore
from logdist.events import event
from logdist.formats.packet import Packet
from logdist.net.server import ListenError
from logdist.net.tls import ServerTls, client_context

log = logging.getLogger("logdist.distributor")


class Distributor:
    def __init__(self, cfg: DistributorConfig, now: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self._now = now
        self.counters = Counters()
        self.registry = Registry(
            now=now, rise=cfg.health.rise, fall=cfg.health.fall, max_pending=cfg.max_pending
        )
        self.state = StateStore(cfg.state_dir) if cfg.state_dir else None
        self._restore()
        self.logs = LogHub(cfg.log_buffer)
        # Forwards, probes, searches and emitter calls; the syslog output and NATS too.
        self.client_tls = client_context(cfg.client, "distributor")
        self.tls = ServerTls.of(cfg.tls, "distributor")  # its ports' (HTTP and syslog)
        self.dispatcher = Dispatcher(
            cfg, self.registry, self.counters, now, self._delivered, self.client_tls
        )
        self.dead_letters = DeadLetterStore(
            cfg.dead_letter_path, cfg.dead_letter_max_bytes, cfg.fsync
        )
        self.dead_letters.load()
        self.dispatcher.on_dead_letter = self._dead_letter
        self._ticker: asyncio.Task[None] | None = None
        self.health = HealthChecker(
            cfg.health, self.registry, self.dispatcher.health_changed, self.client_tls
        )
        self.control = ControlMeter()
        self.emitters = EmitterDirectory(
            now, cfg.emitter_networks, cfg.emitter_lease, cfg.emitter_forget, self.control
        )
        self.emitters.shares = self.dispatcher.shares
        self._sweeper: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.cluster = self._join_cluster()
        self.spool = self._open_spool()
        self.intake = Intake(
            cfg,
            self.counters,
            self.dispatcher,
            self.dead_letters,
            self.emitters,
            self.spool,
            self.cluster,
        )
        self.views = Views(
            cfg,
            now,
            self.registry,
            self.counters,
            self.dispatcher,
            self.health,
            self.emitters,
            self.dead_letters,
            self.control,
            self.spool,
            self.cluster,
        )
        self.admin = Admin(
            cfg,
            now,
            self.registry,
            self.dispatcher,
            self.health,
            self.emitters,
            self.dead_letters,
            self.state,
            self.spool,
            self.cluster,
            self.intake.spool_failed,
            self.views.pool_changed,
        )
        self.metrics = Metrics(
            Sources(
                self.counters,
                self.control,
                self.registry,
                self.dispatcher,
                self.dead_letters,
                cfg.queue_capacity,
                self.cluster,
                self.tls,
            )
        )
        # The inputs: the lean front door for packets, the parse processes that read syslog,
        # OTLP and records, and the syslog ports. Syslog packet ids are PREFIX-wN-SEQ (a parse
        # process's), PREFIX-SEQ or PREFIX-udp-SEQ: a token of each start keeps them apart from
        # an earlier run's, which analyzers may have seen (they drop an id seen as a duplicate).
        workers = cfg.parse_workers if cfg.parse_workers is not None else default_workers()
        prefix = f"syslog-{secrets.token_hex(6)}"
        self.procs = ParseProcesses(workers, prefix, cfg.syslog.max_message_bytes)
        # Conversions to the analyzers' own formats run there too.
        self.dispatcher.wire.procs = self.procs
        self.dispatcher.on_split = self._split
        self.syslog = SyslogListener(self.intake, cfg.syslog, self.procs, self.tls)
        self.front = Front(self.intake)

    def _join_cluster(self) -> Cluster | None:
        """In cluster mode, this replica's part of it."""
        cfg = self.cfg
        if not cfg.cluster.servers:
            return None
        cluster = Cluster(
            cfg.cluster,
            cfg.id,
            self._room,
            self._fetched,
            cfg.retry_after,
            url=f"http://{cfg.host}:{cfg.port}",
            tls=self.client_tls,
            above=cfg.fair_share_above,
            refused=self.dispatcher.shares.refused,
        )
        self.dispatcher.on_room.append(cluster.room)
        return cluster

    def _open_spool(self) -> Spool | None:
        """The spool, if there is one, with what the last run left queued again."""
        cfg = self.cfg
        if not cfg.spool_dir:
            return None
        spool = Spool(
            cfg.spool_dir, cfg.spool_max_bytes, cfg.spool_segment_bytes, cfg.fsync, cfg.retry_after
        )
        replay = spool.recover()
        self.counters.replayed = len(replay)
        self.dispatcher.enqueue(replay, replayed=True)
        return spool

    def _restore(self) -> None:
        """The analyzers to start with: the state directory's, else the config's (in cluster
        mode, the control bucket says which there are: Cluster.start)."""
        cfg = self.cfg
        saved = self.state.load() if self.state else None
        if cfg.cluster.servers:
            return
        if saved is None:
            for ref in cfg.analyzers:
                self.registry.add(ref.id, ref.url, ref.weight, ref.delivery)
            return
        for ref, admin in saved:
            self.registry.add(ref.id, ref.url, ref.weight, ref.delivery)
            self.registry.set_admin(ref.id, admin)
        path = self.state.path if self.state else ""
        event(log, "state_restored", path=path, analyzers=len(saved))

    def _fetched(self, packets: list[Packet]) -> None:
        """Packets this replica fetched from the stream: route them (counted where accepted)."""
        self.dispatcher.enqueue(packets, replayed=True)

    def _room(self) -> int:
        return self.cfg.queue_capacity - self.dispatcher.queued

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

    def _split(self, packet: Packet, parts: list[Packet]) -> None:
        """An answer record by record split `packet` into `parts`: the spool and the cluster
        stream keep it until every part is settled."""
        if self.spool is not None:
            self.spool.split(packet, len(parts))
        if self.cluster is not None:
            self.cluster.split(packet, parts)

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
        """Every part started, the syslog ports last; a port that cannot be bound stops what
        started and raises ListenError."""
        await self._start_parts()
        try:
            await self.syslog.start()
        except ListenError:
            await self.stop()
            raise

    async def stop(self) -> None:
        """The inputs closed first (what syslog gathered is owned before the queue drains),
        then what is held delivered for up to drain_timeout (the parse processes still make
        the analyzers' requests meanwhile), then every part stopped."""
        await self.syslog.close()
        await self._stop_parts()
        self.procs.close()

    async def _start_parts(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30, ssl=self.client_tls),
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

    async def _stop_parts(self) -> None:
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

    async def _sweep_emitters(self) -> None:
        """Forget emitters gone for long, and end spells of 429s gone quiet, every few
        seconds."""
        every = min(5.0, max(0.5, self.cfg.emitter_lease / 6))
        while True:
            await asyncio.sleep(every)
            self.emitters.sweep()
            self.dispatcher.shares.end_spells()
