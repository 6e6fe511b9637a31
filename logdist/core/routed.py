"""The routed-log view: the last packets sent to analyzers, read back as messages.

Recording is a deque append of references already held; a packet is parsed into its
messages only when someone reads the backlog or watches live, so an unwatched distributor
pays almost nothing for it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import orjson

from logdist.formats.otlp import unwrap
from logdist.formats.packet import Packet


@dataclass(frozen=True)
class LogFilter:
    analyzer: str | None = None
    emitter: str | None = None
    level: str | None = None

    def wants_message(self, message: dict[str, Any]) -> bool:
        if self.level is None:
            return True
        level = message.get("level")
        return isinstance(level, str) and level.upper() == self.level.upper()


def expand(routed_at: float, analyzer: str, packet: Packet, flt: LogFilter) -> list[dict[str, Any]]:
    """The messages of `packet` (every packet of a run) that pass `flt`, with where they went."""
    if flt.analyzer is not None and flt.analyzer != analyzer:
        return []
    out: list[dict[str, Any]] = []
    for part in packet.parts():
        # An OTLP request kept as it came is opened only here, for someone watching.
        obj = orjson.loads(unwrap(part.body) if part.otlp else part.body)
        emitter = part.emitter
        if emitter is None and isinstance(obj.get("emitter"), str):
            emitter = obj["emitter"]  # a run from several emitters names none itself
        if flt.emitter is not None and flt.emitter != emitter:
            continue
        meta = {
            "analyzer": analyzer,
            "emitter": emitter,
            "packetId": part.id,
            "routed_at": routed_at,
        }
        messages = obj.get("messages", [])
        indexes = obj.get("indexes")  # a part of a packet: its messages' own indexes
        if not isinstance(indexes, list) or len(indexes) != len(messages):
            indexes = range(len(messages))
        out += [
            {**m, **meta, "index": i}
            for i, m in zip(indexes, messages, strict=True)
            if isinstance(m, dict) and flt.wants_message(m)
        ]
    return out


class RoutedLog:
    """The last `capacity` routed packets (so at least `capacity` messages); a run counts as
    the packets it holds, and goes whole, once the newer ones are `capacity` without it.

    Counting a run as one would keep `capacity` runs: under bulk load 500 runs of 100 KB,
    50 MB held for `tail logs`.
    """

    def __init__(self, capacity: int) -> None:
        self._ring: deque[tuple[float, str, Packet]] = deque()
        self._capacity = capacity
        self._packets = 0

    def record(self, routed_at: float, analyzer: str, packets: Sequence[Packet]) -> None:
        if not packets:
            return
        ring = self._ring
        ring.extend(zip(repeat(routed_at), repeat(analyzer), packets, strict=False))
        self._packets += sum([p.count for p in packets])
        capacity = self._capacity
        while self._packets - ring[0][2].count >= capacity:
            self._packets -= ring.popleft()[2].count

    def recent(self, n: int, flt: LogFilter) -> list[dict[str, Any]]:
        """The last `n` messages that pass `flt`, oldest first."""
        picked: list[dict[str, Any]] = []
        for routed_at, analyzer, packet in reversed(self._ring):
            if len(picked) >= n:
                break
            messages = expand(routed_at, analyzer, packet, flt)
            picked.extend(reversed(messages[-(n - len(picked)) :]))
        picked.reverse()
        return picked
