"""What an analyzer's answer does to the packets it was sent (mixed into the Dispatcher).

An answer is one of four things (the analyzer's output reads it: `outputs/`). Delivered.
A failure (no answer, 5xx, 408, 429): what was sent goes back to the head of the queue,
marked so that another analyzer is preferred, and counts against the analyzer's health. A
refusal (any other 4xx, or the protocol's permanent errors): the analyzer is fine but will
not take this data; a batch is split in halves, again and again (an analyzer of records down
to one message), to find what it refuses, and the rest is delivered. Partial (an answer that
speaks record by record): each packet is split into the part delivered, the part sent again
and the part refused (`parts`). A refused packet goes to another analyzer that has not
refused it; one refused by `max_refusals` analyzers (or by every eligible one, if fewer)
becomes a dead letter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from logdist.config import DistributorConfig
from logdist.core.delivery import DELIVERED, PARTIAL, REFUSED
from logdist.core.registry import Analyzer, HealthChange, Registry
from logdist.distributor.inputs.parsing import GONE
from logdist.distributor.observe.counters import Counters
from logdist.distributor.outputs.base import Sorted
from logdist.distributor.outputs.wire import Wire
from logdist.distributor.routing import parts
from logdist.distributor.routing.holds import Holds
from logdist.distributor.routing.outbox import Outbox, opened
from logdist.distributor.routing.shares import Shares
from logdist.events import event
from logdist.formats.packet import Packet, Refusal, total
from logdist.net.pool import Answer, ForwardError

log = logging.getLogger("logdist.distributor")


class Verdicts:
    """Mixed into `Dispatcher`, whose attributes these are."""

    cfg: DistributorConfig
    registry: Registry
    counters: Counters
    wire: Wire
    holds: Holds
    shares: Shares
    unacked: int
    on_delivered: Callable[[str, list[Packet], float], None] | None
    on_dead_letter: Callable[[Packet], bool] | None
    on_split: Callable[[Packet, list[Packet]], None] | None
    _now: Callable[[], float]
    # Set when it owns no packets.
    _settled: asyncio.Event
    # The dispatcher's: send again (after a back-off once tried often), to the queue's head,
    # a health change.
    _retry: Callable[[list[Packet]], None]
    _requeue: Callable[[list[Packet]], None]
    health_changed: Callable[[HealthChange], None]

    async def _attempt(self, box: Outbox, batch: list[Packet]) -> None:
        """Forward `batch` once; a refused batch is split and its halves forwarded in turn."""
        analyzer = box.analyzer
        stats = self.counters.analyzer(analyzer.id)
        stats.requests += 1
        started = self._now()
        try:
            if batch[0].otlp and not self.wire.takes_otlp(analyzer):
                batch = await self.wire.unwrap(batch)
            answer, sent = await self.wire.send(analyzer, batch, self.cfg.forward_timeout)
        except ForwardError as exc:
            self._failed(analyzer, batch, str(exc))
            return
        except GONE as exc:
            # A parse process died converting it: not the analyzer's doing.
            if self.wire.procs is not None:
                self.wire.procs.close_broken()
            self._not_made(batch, f"parse process gone: {exc!r}")
            return
        except Exception as exc:  # noqa: BLE001 - a conversion that failed keeps its packets
            self._not_made(batch, f"could not make the request: {exc!r}")
            return
        verdict = self.wire.sort(analyzer, answer, sent)
        kind = verdict.kind
        if kind == DELIVERED:
            latency = self._now() - started
            self._delivered(analyzer, batch)
            if self.on_delivered is not None:
                self.on_delivered(analyzer.id, batch, latency)
        elif kind == PARTIAL:
            self._answered(analyzer)
            self._partial(analyzer, batch, verdict, answer, self._now() - started)
        elif kind == REFUSED:
            self._answered(analyzer)
            packets = opened(batch)
            one = packets[0]
            if (
                len(packets) == 1
                and one.messages > 1
                and not one.otlp
                and self.wire.converts(analyzer)
            ):
                # One packet refused by an analyzer of records: narrow it down to them.
                packets = parts.halves(packets[0])
                self._split(batch[0], packets)
            if len(packets) == 1:
                self._refused(analyzer, packets[0], answer.status, answer.text())
                return
            half = len(packets) // 2
            stats.splits += 1
            await self._attempt(box, packets[:half])
            await self._attempt(box, packets[half:])
        else:
            if answer.status == 429 or answer.retry_after is not None:
                self.holds.hold(analyzer.id, answer.retry_after)
            self._failed(analyzer, batch, f"HTTP {answer.status}")

    def _answered(self, analyzer: Analyzer) -> None:
        """It answered: whatever it thinks of the data, it is alive."""
        change = self.registry.record_success(analyzer.id, passive=True)
        if change is not None:
            self.health_changed(change)

    def _split(self, packet: Packet, parts: list[Packet]) -> None:
        """`parts` stand for `packet` from now on."""
        self.unacked += len(parts) - 1
        self.shares.split(packet, len(parts))
        if self.on_split is not None:
            self.on_split(packet, parts)

    def _not_made(self, batch: list[Packet], reason: str) -> None:
        event(log, "forward_not_made", logging.ERROR, packets=total(batch), reason=reason)
        for packet in batch:
            packet.attempts += 1
        self._retry(batch)

    def _partial(
        self, analyzer: Analyzer, batch: list[Packet], verdict: Sorted, answer: Answer, took: float
    ) -> None:
        """An answer record by record: each packet split into the part delivered, the part to
        send again and the part refused (`parts.plan`); each part goes its way."""
        plan = parts.plan(opened(batch), verdict)
        for packet, pieces in plan.splits:
            self._split(packet, pieces)
        if plan.again:
            for packet in plan.again:
                packet.attempts += 1
                packet.last_failed = analyzer.id
            self.counters.retries += len(plan.again)
            self._retry(plan.again)
        for part, status, reason in plan.refused:
            self._refused(analyzer, part, status, reason)
        if verdict.hold:
            self.holds.hold(analyzer.id, answer.retry_after)
        if verdict.unnamed:
            self.counters.refused[(analyzer.id, answer.status)] += verdict.unnamed
            event(
                log,
                "records_refused_unnamed",
                logging.WARNING,
                analyzer=analyzer.id,
                records=verdict.unnamed,
                reason=verdict.reason,
            )
        if plan.delivered:
            self._delivered(analyzer, plan.delivered, unnamed=verdict.unnamed)
            if self.on_delivered is not None:
                self.on_delivered(analyzer.id, plan.delivered, took)

    def _refused(self, analyzer: Analyzer, packet: Packet, status: int, reason: str) -> None:
        """`analyzer` refused `packet` (one packet): another analyzer, or a dead letter."""
        self.counters.refused[(analyzer.id, status)] += 1
        refusal = Refusal(analyzer.id, status, reason)
        refusals = packet.refusals = [*(packet.refusals or ()), refusal]
        refusers = {r.analyzer for r in refusals}
        limit = max(1, min(self.cfg.max_refusals, self.registry.routable_count))
        dead = len(refusers) >= limit or len(refusals) >= 3 * self.cfg.max_refusals
        event(
            log,
            "packet_refused",
            logging.WARNING,
            analyzer=analyzer.id,
            status=status,
            packet=packet.id,
            refusals=len(refusers),
            limit=limit,
        )
        packet.last_failed = analyzer.id
        if dead and self.on_dead_letter is not None and self.on_dead_letter(packet):
            self.counters.dead_letters[(analyzer.id, status)] += 1
            self.shares.settled([packet])
            self._settle(packet.count)
            return
        if dead:
            # It could not be written as a dead letter: keep it, and try again later.
            packet.attempts += 1
            self._retry([packet])
            return
        self._requeue([packet])

    def _delivered(self, analyzer: Analyzer, batch: list[Packet], unnamed: int = 0) -> None:
        # Records an answer refused without naming them are not counted delivered.
        messages = sum([p.messages for p in batch]) - unnamed
        count = total(batch)
        stats = self.counters.analyzer(analyzer.id)
        stats.packets += count
        stats.messages += messages
        self.counters.delivered_packets += count
        self.counters.delivered_messages += messages
        self.shares.settled(batch)
        self._settle(count)
        change = self.registry.record_success(analyzer.id, passive=True)
        if change is not None:
            self.health_changed(change)

    def _settle(self, count: int) -> None:
        """`count` packets left the distributor's hands (delivered, or dead letters)."""
        self.unacked -= count
        if self.unacked == 0:
            self._settled.set()

    def _failed(self, analyzer: Analyzer, batch: list[Packet], reason: str) -> None:
        self.counters.analyzer(analyzer.id).failures += 1
        self.counters.forward_failures += 1
        self.counters.retries += total(batch)
        event(
            log,
            "forward_failed",
            logging.WARNING,
            analyzer=analyzer.id,
            packets=total(batch),
            reason=reason,
        )
        for packet in batch:
            packet.attempts += 1
            packet.last_failed = analyzer.id
        change = self.registry.record_failure(analyzer.id, reason, passive=True)
        if change is not None:
            self.health_changed(change)
        self._retry(batch)
