"""An analyzer's outbox: the packets assigned to it, waiting for one of its senders, and how
the next request's batch forms from them."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from logdist.core.registry import Analyzer
from logdist.formats.packet import Packet

# Bytes per forwarded batch, beside the packet count limit.
BATCH_BYTES = 4 << 20


@dataclass(eq=False)
class Outbox:
    analyzer: Analyzer
    packets: deque[Packet] = field(default_factory=deque)
    senders: int = 0
    # Senders about to take from `packets` (spawned, or back from a forward): while one is,
    # packets routed meanwhile join its batch instead of starting another sender.
    idle: int = 0

    def deep(self, senders: int, batch: int) -> bool:
        """It holds what all its senders take in one go: what comes next waits in the
        distributor's queue, where emitters take turns, not here in arrival order."""
        return len(self.packets) >= senders * (batch if self.analyzer.batches else 1)

    def next_request(self, limit: int) -> list[Packet]:
        """What the next forward carries: one packet to an analyzer that takes one at a time
        (a run is opened for it), else a batch of up to `limit` packets and BATCH_BYTES."""
        first = self.packets.popleft()
        if not self.analyzer.batches:
            if first.count > 1:
                parts = first.parts()
                self.packets.extendleft(reversed(parts[1:]))
                first = parts[0]
            return [first]
        batch = [first]
        size = len(first.body)
        count = first.count
        # A request carries OTLP requests as they came, or packets, never both.
        kind = first.otlp
        while self.packets and count + self.packets[0].count <= limit:
            if self.packets[0].otlp is not kind:
                break
            size += len(self.packets[0].body) + 1
            if size > BATCH_BYTES:
                break
            packet = self.packets.popleft()
            count += packet.count
            batch.append(packet)
        return batch


def opened(batch: list[Packet]) -> list[Packet]:
    """The packets of `batch` one by one, runs opened."""
    if len(batch) == 1 and batch[0].count == 1:
        return batch
    return [part for p in batch for part in p.parts()]
