"""Synthetic packets in the seed's format."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

LEVELS = ("INFO", "DEBUG", "WARN", "ERROR")
LEVEL_WEIGHTS = (70, 15, 10, 5)
CUM_WEIGHTS = tuple(itertools.accumulate(LEVEL_WEIGHTS))
# A random version-4 UUID from 128 random bits: clear the version and variant bits, set them.
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)


def uuid4_from(bits: int) -> str:
    """`str(uuid.UUID(int=bits, version=4))`, without building the UUID (a fleet makes
    thousands a second)."""
    h = f"{bits & _UUID_CLEAR | _UUID_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(slots=True)
class Outgoing:
    id: str
    messages: int
    body: bytes
    # When it was generated (monotonic seconds); a fleet measures delivery latency from it.
    born: float = 0.0


_stamp: tuple[int, str] = (0, "")


def utc_stamp() -> str:
    """Now as RFC 3339 UTC to the millisecond, formatted once per millisecond (a fleet makes
    thousands of packets a second)."""
    global _stamp
    ms = time.time_ns() // 1_000_000
    if ms != _stamp[0]:
        text = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
        _stamp = (ms, text.replace("+00:00", "Z"))
    return _stamp[1]


class PacketFactory:
    """Packets of `messages` (lo, hi) messages each, ids and contents drawn from `rand`."""

    def __init__(
        self,
        emitter: str,
        messages: tuple[int, int],
        service: str = "demo_service",
        rand: random.Random | None = None,
        clock: Callable[[], str] = utc_stamp,
    ) -> None:
        self.emitter = emitter
        self.lo, self.hi = messages
        self.service = service
        self.rand = rand or random.Random()
        self.clock = clock
        self.seq = 0

    def make(self) -> Outgoing:
        rand = self.rand
        count = self.lo if self.lo == self.hi else rand.randint(self.lo, self.hi)
        ts = self.clock()
        levels = rand.choices(LEVELS, cum_weights=CUM_WEIGHTS, k=count)
        self.seq += 1
        pid = uuid4_from(rand.getrandbits(128))
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
