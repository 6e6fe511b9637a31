"""Fair admission to cluster mode's stream (routing.stream_shares), from the counts the servers
report per emitter subject and what this replica published since: a burst is refused 429 past
its share while the stream fills, an emitter that holds nothing or stays within its share is
admitted, no one is refused within the budget, and everyone (503) past the stream's size."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logdist.distributor.control.publisher import subject_of
from logdist.distributor.routing.stream_shares import (
    SLACK,
    SLACK_MIN,
    StreamShares,
    server_max_bytes,
)
from logdist.errors import Backpressure, Throttled
from logdist.formats.packet import Packet, parse_batch

MiB = 1 << 20


def packet(emitter: str, pid: str = "p") -> Packet:
    return Packet(pid, emitter, 1, b"{}")


class Refusals:
    def __init__(self) -> None:
        self.calls: list[tuple[str | None, dict[str, Any]]] = []

    def __call__(self, emitter: str | None, **why: Any) -> None:
        self.calls.append((emitter, why))


def shares(above: float = 0.5, max_bytes: int = 100 * MiB) -> tuple[StreamShares, Refusals]:
    refused = Refusals()
    s = StreamShares(above, max_bytes, 1.0, lambda p: (subject_of(p.emitter), p.emitter), refused)
    return s, refused


def quiet_and_burst(quiet: int, burst: int) -> dict[str, int]:
    counts = {subject_of(f"q{i}"): 1 for i in range(quiet)}
    counts[subject_of("burst")] = burst
    return counts


def test_within_the_budget_no_one_is_refused_however_much_it_holds() -> None:
    s, refused = shares()
    s.read(1_000, 40 * MiB, quiet_and_burst(10, 990))  # 40 % full: calm
    s.check([packet("burst")])
    assert s.level is None and not refused.calls


def test_past_the_budget_the_burst_is_refused_and_the_quiet_admitted() -> None:
    s, refused = shares()
    # 1,000 quiet emitters a message each, the burst 9,000: 90 MiB of 100, past the budget.
    s.read(10_000, 90 * MiB, quiet_and_burst(1_000, 9_000))
    assert s.level is not None and s.level < s.holding(subject_of("burst"))
    with pytest.raises(Throttled) as caught:
        s.check([packet("burst")])
    assert caught.value.status == 429 and caught.value.detail["emitter"] == "burst"
    assert refused.calls[0][0] == "burst" and refused.calls[0][1]["holding"] > 80 * MiB
    for i in range(1_000):
        s.check([packet(f"q{i}")])  # each holds one message: within its share
    s.check([packet("newcomer")])  # holds nothing: always admitted
    assert len(refused.calls) == 1


def test_the_sizes_a_replica_published_weigh_its_emitters_holdings() -> None:
    """The burst's messages are large and the quiet ones' small: counted in messages at the
    mean size, the burst would look smaller than it is and fill the stream."""
    s, refused = shares()
    for _ in range(3):
        s.published(subject_of("burst"), 300_000)
        s.published(subject_of("q0"), 100)
    # 280 burst messages of 300 kB and 720 quiet of 100 B: 84 MB, past the budget (50 MiB).
    counts = {subject_of("burst"): 280, subject_of("q0"): 720}
    s.read(1_000, 280 * 300_000 + 720 * 100, counts)
    assert s.holding(subject_of("burst")) == 280 * 300_000
    assert s.holding(subject_of("q0")) == 720 * 100
    # Its share is all the room but what q0 holds: room for 25 more of its messages.
    room = int(100 * MiB * 0.5 + 100 * MiB * 0.5 * 0.75)
    assert (room - 720 * 100 - 280 * 300_000) // 300_000 == 25
    for _ in range(25):
        s.check([Packet("b", "burst", 1, b"x" * 300_000)])
        s.published(subject_of("burst"), 300_000)
    with pytest.raises(Throttled):
        s.check([Packet("b", "burst", 1, b"x" * 300_000)])
    s.check([packet("q0")])  # the quiet one, past many messages but few bytes, goes on
    assert [e for e, _ in refused.calls] == ["burst"]


def test_what_the_shared_subject_holds_is_taken_off_the_room_the_shares_divide() -> None:
    """Packets published while the stream was calm are on the shared subject, whoever's they
    are: the emitters' shares divide the room less those."""
    s, refused = shares()
    for _ in range(3):
        s.published("shared", 10_000)
        s.published(subject_of("burst"), 10_000)
    # 60 MiB: 5,000 shared messages of 10 kB (48 MiB), the burst 1,200 of its own (11 MiB).
    s.read(6_200, 62_000_000, {subject_of("burst"): 1_200}, shared=5_000)
    assert s.unattributed == 50_000_000
    room = int(100 * MiB * 0.5 + 100 * MiB * 0.5 * 0.75)
    assert s.room == room - 50_000_000 and s.level == s.room
    # The burst may hold what is left of the room (41.75 MiB less its 12 MB), no more.
    left = (s.room - 12_000_000) // 10_000
    for _ in range(left):
        s.check([Packet("b", "burst", 1, b"x" * 10_000)])
        s.published(subject_of("burst"), 10_000)
    with pytest.raises(Throttled):
        s.check([Packet("b", "burst", 1, b"x" * 10_000)])
    s.check([packet("quiet")])  # holds nothing: admitted


def test_what_this_replica_published_since_the_reading_counts() -> None:
    s, refused = shares()
    s.read(10_000, 90 * MiB, quiet_and_burst(1_000, 9_000))
    level = s.level
    assert level is not None
    s.check([packet("q0")])
    for _ in range(100):  # q0 now holds more than the share
        s.published(subject_of("q0"), level // 100 + 1)
    with pytest.raises(Throttled):
        s.check([packet("q0")])
    s.read(10_000, 90 * MiB, quiet_and_burst(1_000, 9_000))  # a new reading: one message
    s.check([packet("q0")])


def test_a_reading_without_counts_or_fairness_off_refuses_nothing() -> None:
    s, refused = shares()
    s.read(10_000, 95 * MiB, None)  # a plain reading (the counts were not asked for)
    s.check([packet("burst")])
    off, _ = shares(above=0.0)
    off.read(10_000, 95 * MiB, quiet_and_burst(1_000, 9_000))
    off.check([packet("burst")])
    assert not off.wants_counts() and not refused.calls


def test_counts_are_asked_for_from_half_the_budget_with_what_was_published_since() -> None:
    s, _ = shares()
    s.read(100, 20 * MiB, None)
    assert not s.wants_counts()
    s.published(subject_of("e"), 6 * MiB)  # 26 of 100 MiB: past half the budget (25)
    assert s.wants_counts()
    assert s.to_json()["pressure"] == 0.26


@settings(max_examples=200, deadline=None)
@given(
    held=st.lists(st.tuples(st.integers(1, 500), st.integers(50, 5_000)), min_size=1, max_size=30),
    fill=st.floats(0.0, 1.0),
)
def test_whoever_is_within_its_fair_share_of_the_stream_is_admitted(
    held: list[tuple[int, int]], fill: float
) -> None:
    """For any counts, sizes and fullness: an emitter is refused only past the budget and
    only if, adding its packet, it would pass the max-min share (in bytes) of the stream's
    room; one holding nothing never is."""
    max_bytes = 100 * MiB
    s, refused = shares(max_bytes=max_bytes)
    for i, (_, size) in enumerate(held):
        s.published(subject_of(f"e{i}"), size)  # this replica's sizes for them
    counts = {subject_of(f"e{i}"): q for i, (q, _) in enumerate(held)}
    nbytes = int(fill * max_bytes)
    s.read(sum(q for q, _ in held), nbytes, counts)
    bytes_held = [q * size for q, size in held]
    room = int(max_bytes * 0.5 + max_bytes * 0.5 * 0.75)
    for i, (_, size) in enumerate(held):
        p = Packet(f"p{i}", f"e{i}", 1, b"x" * size)
        try:
            s.check([p])
        except Throttled:
            assert nbytes > max_bytes * 0.5
            assert sum(min(q, bytes_held[i] + size) for q in bytes_held) + size > room
        else:
            others = sum(min(q, bytes_held[i] + size) for j, q in enumerate(bytes_held) if j != i)
            assert nbytes <= max_bytes * 0.5 or others + bytes_held[i] + size <= room
    s.check([packet("newcomer")])


def test_past_max_bytes_logdist_refuses_503_before_the_servers_would() -> None:
    """The servers' stream is larger than max_bytes (they may drop a full stream's oldest
    messages), and logdist refuses past max_bytes itself, counting what it published since
    the last reading."""
    assert server_max_bytes(100 * MiB) == 100 * MiB + int(100 * MiB * SLACK)
    assert server_max_bytes(MiB) == MiB + SLACK_MIN
    s, _ = shares(above=0.0)
    s.read(100, 100 * MiB - 3_000, None)
    s.check_room([Packet("a", "e", 1, b"x" * 2_000)])
    s.published(subject_of("e"), 2_000)
    with pytest.raises(Backpressure) as caught:
        s.check_room([Packet("b", "e", 1, b"x" * 2_000)])
    assert caught.value.status == 503 and "stream is full" in caught.value.message
    s.read(90, 90 * MiB, None)  # delivered meanwhile: room again
    s.check_room([Packet("b", "e", 1, b"x" * 2_000)])


def test_a_run_of_several_emitters_is_reckoned_for_each_of_them() -> None:
    s, refused = shares()
    s.read(10_000, 90 * MiB, quiet_and_burst(1_000, 9_000))
    body = b"\n".join(
        b'{"packetId": "r%d", "emitter": "%s", "messages": [{}]}' % (i, e)
        for i, e in enumerate([b"q1", b"q2", b"burst"])
    )
    run = parse_batch(body, ndjson=True, run=100)
    assert len(run) == 1 and run[0].emitters == ["q1", "q2", "burst"]
    with pytest.raises(Throttled) as caught:
        s.check(run)  # the burst's packet in it is past its share
    assert caught.value.detail["emitter"] == "burst"
    s.check(parse_batch(body.rsplit(b"\n", 1)[0], ndjson=True, run=100))  # the quiet two
