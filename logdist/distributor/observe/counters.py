"""What the distributor counts: every packet in, out, retried or refused."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from logdist.formats.packet import Packet


@dataclass
class AnalyzerCounters:
    packets: int = 0
    messages: int = 0
    requests: int = 0
    failures: int = 0
    # Refused batches split in two to find the packets refused.
    splits: int = 0


# Where packets come in. `packets` is POST /log-packet and /log-packets (the hot path, counted
# as the total less the others, so it costs nothing extra); the others count themselves.
INPUTS = ("packets", "records", "otlp", "syslog")


@dataclass
class InputCounters:
    packets: int = 0
    messages: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


@dataclass
class Counters:
    received_packets: int = 0
    received_messages: int = 0
    delivered_packets: int = 0
    delivered_messages: int = 0
    # Packets handed back for another try after a failed forward (one per packet per failure).
    retries: int = 0
    forward_failures: int = 0
    # Packets read back from the spool at start (accepted by an earlier run).
    replayed: int = 0
    # Requests refused, by the error code sent back.
    rejected: Counter[str] = field(default_factory=Counter)
    # Packets analyzers refused (a 4xx other than 408/429), by analyzer and status; and the
    # packets that became dead letters, by the analyzer and status of their last refusal.
    refused: Counter[tuple[str, int]] = field(default_factory=Counter)
    dead_letters: Counter[tuple[str, int]] = field(default_factory=Counter)
    analyzers: dict[str, AnalyzerCounters] = field(default_factory=dict)
    # Inputs other than `packets`, by name.
    others: dict[str, InputCounters] = field(default_factory=dict)

    def input(self, name: str) -> InputCounters:
        counters = self.others.get(name)
        if counters is None:
            counters = self.others[name] = InputCounters()
        return counters

    def input_took(self, name: str, packets: list[Packet]) -> None:
        """Input `name` (not `packets`) had these packets accepted."""
        counters = self.input(name)
        counters.packets += len(packets)
        counters.messages += sum(p.messages for p in packets)

    def input_refused(self, name: str, code: str, count: int = 1) -> None:
        """Input `name` (not `packets`) had `count` requests (syslog: messages) refused with
        `code`."""
        self.rejected[code] += count
        self.input(name).rejected[code] += count

    def by_input(self) -> dict[str, InputCounters]:
        """Every input's counts: `packets` is what the others do not account for."""
        others = [self.others.get(name, InputCounters()) for name in INPUTS[1:]]
        rejected = Counter(self.rejected)
        for o in others:
            rejected.subtract(o.rejected)
        packets = InputCounters(
            self.received_packets - sum(o.packets for o in others),
            self.received_messages - sum(o.messages for o in others),
            +rejected,
        )
        return {"packets": packets, **dict(zip(INPUTS[1:], others, strict=True))}

    def analyzer(self, aid: str) -> AnalyzerCounters:
        counters = self.analyzers.get(aid)
        if counters is None:
            counters = self.analyzers[aid] = AnalyzerCounters()
        return counters

    def to_json(self) -> dict[str, Any]:
        return {
            "received_packets": self.received_packets,
            "received_messages": self.received_messages,
            "delivered_packets": self.delivered_packets,
            "delivered_messages": self.delivered_messages,
            "retries": self.retries,
            "forward_failures": self.forward_failures,
            "replayed": self.replayed,
            "rejected": dict(self.rejected),
            "refused": sum(self.refused.values()),
            "dead_letters": sum(self.dead_letters.values()),
            "inputs": {
                name: {
                    "received_packets": c.packets,
                    "received_messages": c.messages,
                    "rejected": dict(c.rejected),
                }
                for name, c in self.by_input().items()
            },
        }
