"""The distributor's queue: packets leave it by deficit round robin across emitters.

Each emitter with packets waiting has a lane (a FIFO) and a place in a ring of turns. The
lane whose turn it is may send up to its deficit in messages; a turn adds `quantum` to it, and
a lane that empties leaves the ring and forgets its deficit (classic DRR, Shreedhar and
Varghese 1995). So a packet from a quiet emitter, arriving behind a bursty emitter's thousands,
waits for at most one turn of every other emitter — `quantum` messages and one packet more
from each — instead of the whole burst. Packets handed back to be tried again (a failed
request, an analyzer's outbox emptied) wait at the front, before every lane: they have waited
once already. With `fair` off there is one lane, a plain FIFO.

Work is O(1) a packet (amortised: a turn either sends or adds `quantum` to a deficit), whatever
the number of emitters. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from logdist.formats.packet import Packet

# Messages a lane may send a turn (its deficit grows by this much each turn it waits).
QUANTUM = 100


class FairQueue:
    __slots__ = ("quantum", "fair", "front", "lanes", "turns", "deficit", "size")

    def __init__(self, *, fair: bool = True, quantum: int = QUANTUM) -> None:
        if quantum < 1:
            raise ValueError(f"quantum must be at least 1, got {quantum}")
        self.quantum = quantum
        self.fair = fair
        self.front: deque[Packet] = deque()
        self.lanes: dict[str | None, deque[Packet]] = {}
        self.turns: deque[str | None] = deque()  # lanes with packets; turns[0]'s turn it is
        self.deficit: dict[str | None, int] = {}
        self.size = 0  # packet objects waiting (a run counts one here)

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return self.size > 0

    def __iter__(self) -> Iterator[Packet]:
        """Every packet waiting (front first, then lane by lane; not the order they leave in)."""
        yield from self.front
        for lane in self.lanes.values():
            yield from lane

    def append(self, packet: Packet) -> None:
        key = packet.emitter if self.fair else None
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lanes[key] = deque()
            self.turns.append(key)
            self.deficit[key] = self.quantum if len(self.turns) == 1 else 0
        lane.append(packet)
        self.size += 1

    def extend(self, packets: Iterable[Packet]) -> None:
        for packet in packets:
            self.append(packet)

    def push_front(self, packets: list[Packet]) -> None:
        """`packets` wait before every lane, in their order (they are being tried again)."""
        self.front.extendleft(reversed(packets))
        self.size += len(packets)

    def waiting_emitters(self) -> int:
        return len(self.lanes)

    def peek(self) -> Packet:
        """The packet that leaves next (IndexError when empty); `popleft` takes it."""
        if self.front:
            return self.front[0]
        turns, lanes, deficit = self.turns, self.lanes, self.deficit
        while True:
            key = turns[0]
            packet = lanes[key][0]
            if packet.messages <= deficit[key] or len(turns) == 1:
                return packet
            # Its turn is over: the next lane's begins.
            turns.rotate(-1)
            deficit[turns[0]] += self.quantum

    def popleft(self) -> Packet:
        """Take the packet `peek` returned (call `peek` first)."""
        self.size -= 1
        if self.front:
            return self.front.popleft()
        key = self.turns[0]
        lane = self.lanes[key]
        packet = lane.popleft()
        if lane:
            self.deficit[key] = max(0, self.deficit[key] - packet.messages)
            return packet
        del self.lanes[key], self.deficit[key]
        turns = self.turns
        turns.popleft()
        if turns:
            self.deficit[turns[0]] += self.quantum
        return packet
