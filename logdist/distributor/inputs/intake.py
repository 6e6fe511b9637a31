"""What every input hands its packets to: owned once this says so (room checked, spooled when
there is a spool, queued), or refused with a reason the sender can act on.

Inputs (the front door, records, OTLP, syslog) know only this, not the distributor around it.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable

from logdist.config import DistributorConfig
from logdist.distributor.control.cluster import Cluster
from logdist.distributor.control.emitters import EmitterDirectory
from logdist.distributor.observe.counters import Counters
from logdist.distributor.routing.dispatcher import Dispatcher
from logdist.distributor.storage.deadletters import DeadLetterStore
from logdist.distributor.storage.spool import Spool
from logdist.errors import Backpressure, DeadLettersFull, SpoolFailure
from logdist.events import event
from logdist.formats.packet import Packet, total

log = logging.getLogger("logdist.distributor")


class Intake:
    def __init__(
        self,
        cfg: DistributorConfig,
        counters: Counters,
        dispatcher: Dispatcher,
        dead_letters: DeadLetterStore,
        emitters: EmitterDirectory,
        spool: Spool | None,
        cluster: Cluster | None,
    ) -> None:
        self.cfg = cfg
        self.counters = counters
        self._dispatcher = dispatcher
        self._dead_letters = dead_letters
        self._emitters = emitters
        self._spool = spool
        self._cluster = cluster

    def accept_now(self, packets: list[Packet]) -> Awaitable[None] | None:
        """Own `packets` (room checked, spooled if there is a spool, queued), without a task:
        done at once unless the spool must sync before the 202.

        Returns what to await before answering in that case (the packets are queued once the
        sync is done), else None (they are queued already). In cluster mode the packets go
        to the JetStream stream (whose size is the room), and what to await is its
        acknowledgement; this replica, or another, fetches them from there.
        """
        if self._cluster is not None:
            # This replica's limits; the fair shares are of the stream (Cluster.publish).
            self._dispatcher.shares.check_limits(packets)
            return self._published(self._cluster, packets)
        self._dispatcher.check_room(total(packets))
        self._dispatcher.shares.check(packets)
        if self._dead_letters.full:
            raise self.dead_letters_full()
        if self._spool is None:
            self._queued(packets)
            return None
        try:
            self._spool.write(packets)
        except OSError as exc:
            raise self.spool_failed(exc) from None
        if self._spool.fsync != "always":
            self._queued(packets)
            return None
        return self._synced(self._spool, packets)

    def queue_full(self) -> Backpressure:
        return self._dispatcher.queue_full()

    def wake(self) -> None:
        """Ask routing to run; it calls the `on_room` callbacks when there is room."""
        self._dispatcher.wake()

    def on_room(self, callback: Callable[[], None]) -> None:
        self._dispatcher.on_room.append(callback)

    def _queued(self, packets: list[Packet]) -> None:
        self._dispatcher.enqueue(packets)
        self._emitters.saw(packets)

    def _published(self, cluster: Cluster, packets: list[Packet]) -> Awaitable[None]:
        if self._dead_letters.full:
            raise self.dead_letters_full()
        sent = cluster.publish(packets)

        async def published() -> None:
            await sent
            self.counters.received_packets += total(packets)
            self.counters.received_messages += sum(p.messages for p in packets)
            self._emitters.saw(packets)

        return published()

    async def _synced(self, spool: Spool, packets: list[Packet]) -> None:
        try:
            await spool.sync()
        except OSError as exc:
            # Refused: the client keeps them and retries, so the spool need not hold them.
            spool.ack(packets)
            raise self.spool_failed(exc) from None
        self._queued(packets)

    def spool_failed(self, exc: OSError) -> SpoolFailure:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):  # a full disk: the spool said so once
            event(log, "spool_write_failed", logging.ERROR, error=exc)
        return SpoolFailure(
            f"the spool could not be written ({exc.strerror}); retry later",
            retry_after=self.cfg.retry_after,
        )

    def dead_letters_full(self) -> Backpressure:
        store = self._dead_letters
        return DeadLettersFull(
            f"the dead letters are full ({store.bytes} of {store.max_bytes} bytes):"
            " replay or purge them (logdist ctl dead-letters); retry later",
            retry_after=self.cfg.retry_after,
            detail={"count": len(store.letters), "bytes": store.bytes},
        )
