"""Synthetic packets in the seed's format."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

LEVELS = ("INFO", "DEBUG", "WARN", "ERROR")
LEVEL_WEIGHTS = (70, 15, 10, 5)


@dataclass(slots=True)
class Outgoing:
    id: str
    messages: int
    body: bytes


def utc_now() -> datetime:
    return datetime.now(UTC)


class PacketFactory:
    """Packets of `messages` (lo, hi) messages each, ids and contents drawn from `rand`."""

    def __init__(
        self,
        emitter: str,
        messages: tuple[int, int],
        service: str = "demo_service",
        rand: random.Random | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.emitter = emitter
        self.lo, self.hi = messages
        self.service = service
        self.rand = rand or random.Random()
        self.clock = clock
        self.seq = 0

    def make(self) -> Outgoing:
        rand = self.rand
        count = rand.randint(self.lo, self.hi)
        ts = self.clock().isoformat(timespec="milliseconds").replace("+00:00", "Z")
        levels = rand.choices(LEVELS, LEVEL_WEIGHTS, k=count)
        self.seq += 1
        pid = str(uuid.UUID(int=rand.getrandbits(128), version=4))
        packet = {
            "packetId": pid,
            "emitter": self.emitter,
            "messages": [
                {
                    "ts": ts,
                    "level": level,
                    "service": self.service,
                    "host": self.emitter,
                    "message": f"Sample log message {self.seq}.{i} from {self.emitter}",
                }
                for i, level in enumerate(levels)
            ],
        }
        return Outgoing(pid, count, orjson.dumps(packet))
