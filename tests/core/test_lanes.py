"""The distributor's queue: deficit round robin across emitters, a FIFO when fairness is off."""

from __future__ import annotations

from collections import Counter, deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logdist.core.lanes import FairQueue
from logdist.formats.packet import Packet


def packet(pid: str, emitter: str | None, messages: int = 1) -> Packet:
    return Packet(pid, emitter, messages, b"{}")


def drain(queue: FairQueue) -> list[Packet]:
    out = []
    while queue:
        queue.peek()
        out.append(queue.popleft())
    return out


def test_a_quiet_emitters_packet_does_not_wait_behind_a_burst() -> None:
    queue = FairQueue(quantum=10)
    queue.extend(packet(f"b{i}", "burst") for i in range(1_000))
    queue.append(packet("q", "quiet"))
    order = [p.id for p in drain(queue)]
    # The burst's first turn (10 messages), then the quiet packet.
    assert order.index("q") == 10
    assert [i for i in order if i != "q"] == [f"b{i}" for i in range(1_000)]


def test_turns_are_weighed_in_messages() -> None:
    queue = FairQueue(quantum=10)
    queue.extend(packet(f"big{i}", "big", 10) for i in range(3))
    queue.extend(packet(f"small{i}", "small", 1) for i in range(30))
    order = [p.id for p in drain(queue)]
    # Each turn: one 10-message packet, or ten 1-message packets.
    assert order[:12] == ["big0"] + [f"small{i}" for i in range(10)] + ["big1"]


def test_packets_tried_again_go_first() -> None:
    queue = FairQueue()
    queue.extend([packet("a", "x"), packet("b", "y")])
    queue.push_front([packet("r1", "y"), packet("r2", "x")])
    assert [p.id for p in drain(queue)] == ["r1", "r2", "a", "b"]


def test_with_fairness_off_it_is_one_fifo() -> None:
    queue = FairQueue(fair=False, quantum=1)
    ids = [f"{e}{i}" for i in range(20) for e in ("burst",) * 3 + ("quiet",)]
    queue.extend(packet(pid, pid.rstrip("0123456789"), 5) for pid in ids)
    assert [p.id for p in drain(queue)] == ids
    assert queue.waiting_emitters() == 0


def test_a_lane_that_empties_is_forgotten() -> None:
    queue = FairQueue()
    queue.extend(packet(str(i), f"e{i}") for i in range(1_000))
    assert queue.waiting_emitters() == 1_000 and len(queue) == 1_000
    drain(queue)
    assert queue.waiting_emitters() == 0 and not queue.deficit and not queue.turns


def test_quantum_must_be_positive() -> None:
    with pytest.raises(ValueError, match="quantum"):
        FairQueue(quantum=0)


# An arrival pattern: between takes, packets (emitter, messages) arrive.
arrivals = st.lists(
    st.tuples(
        st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(1, 25)), max_size=30),
        st.integers(0, 40),  # packets taken after these arrive
    ),
    min_size=1,
    max_size=20,
)


@settings(max_examples=300, deadline=None)
@given(arrivals, st.integers(1, 50))
def test_each_other_emitter_goes_ahead_at_most_one_turn(
    pattern: list[tuple[list[tuple[str, int]], int]], quantum: int
) -> None:
    """For any arrivals: nothing is lost or reordered within an emitter, and a packet arriving
    at an empty lane waits behind at most `quantum` + one packet's messages from every other
    emitter (one turn each), however much they have queued."""
    queue = FairQueue(quantum=quantum)
    largest = max((m for batch, _ in pattern for _, m in batch), default=1)
    sent: list[Packet] = []
    taken: list[Packet] = []
    watched: dict[str, Counter[str | None]] = {}  # packet id -> messages taken ahead of it
    seq = 0
    for batch, takes in [*pattern, ([], 10_000)]:
        for emitter, messages in batch:
            p = packet(str(seq), emitter, messages)
            seq += 1
            if emitter not in queue.lanes and messages <= quantum:
                watched[p.id] = Counter()
            queue.append(p)
            sent.append(p)
        for _ in range(min(takes, len(queue))):
            queue.peek()
            p = queue.popleft()
            taken.append(p)
            watched.pop(p.id, None)
            for ahead in watched.values():
                ahead[p.emitter] += p.messages
            for ahead in watched.values():
                assert max(ahead.values(), default=0) <= quantum + largest
    assert sorted(taken, key=lambda p: int(p.id)) == sent
    for emitter in "abcdefgh":
        mine = [int(p.id) for p in taken if p.emitter == emitter]
        assert mine == sorted(mine)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 3_000), st.integers(1, 200))
def test_work_per_packet_does_not_grow_with_the_emitters(emitters: int, quantum: int) -> None:
    """Turns passed (the loop in `peek`) stay within one a packet plus one per `quantum`
    messages, however many emitters wait."""
    queue = FairQueue(quantum=quantum)
    total = 0
    for i in range(3 * emitters):
        messages = 1 + (i * 7) % 40
        total += messages
        queue.append(packet(str(i), f"e{i % emitters}", messages))
    counting = Turns(queue.turns)
    queue.turns = counting
    drain(queue)
    assert counting.rotations <= 3 * emitters + total // quantum + 1


class Turns(deque[str | None]):
    """The ring of turns, counting how often it turns."""

    rotations = 0

    def rotate(self, n: int = 1) -> None:
        self.rotations += 1
        super().rotate(n)
