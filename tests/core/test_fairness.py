"""Max-min fair admission (logdist.core.fairness), checked against water-filling done the
slow, obvious way: whoever stays within its fair share is never refused until the
distributor is truly full, whoever is past it is, and the work does not grow with the
number of emitters."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logdist.core import fairness
from logdist.core.fairness import FairShare


def water_level(demands: list[int], capacity: int) -> float:
    """Max-min fair share by water-filling: the smallest demands are met whole, the rest
    split what is left equally (inf when everything fits)."""
    if sum(demands) <= capacity:
        return float("inf")
    left, rest = capacity, sorted(demands)
    while rest:
        share = left / len(rest)
        if rest[0] > share:
            return share
        left -= rest.pop(0)
    return float("inf")


holdings = st.dictionaries(
    st.integers(0, 40), st.integers(1, 60), max_size=25
)  # emitter -> what it holds


@settings(max_examples=400, deadline=None)
@given(
    held=holdings,
    emitter=st.integers(0, 45),
    n=st.integers(1, 30),
    capacity=st.integers(50, 600),
    pressure=st.sampled_from([0.01, 0.25, 0.5, 0.8, 1.0]),
)
def test_admitted_exactly_when_within_the_fair_share(
    held: dict[int, int], emitter: int, n: int, capacity: int, pressure: float
) -> None:
    fair = FairShare(capacity, pressure=pressure)
    for e, q in held.items():
        fair.add(e, q)
    if fair.held > capacity:
        return  # never reached: nothing is taken past the capacity
    mine = held.get(emitter, 0)
    demands = [q for e, q in held.items() if e != emitter] + [mine + n]
    level = water_level(demands, fair.budget)
    full = fair.held + n > capacity
    assert fair.full(n) is full
    calm = fair.held + n <= fair.budget
    within = mine + n <= level or mine == 0
    # Within the budget, or within its max-min share of it (or holding nothing): admitted
    # (while there is room). Past its share: refused.
    assert fair.admits(emitter, n) is (calm or within)


@settings(max_examples=300, deadline=None)
@given(
    held=holdings,
    emitter=st.integers(0, 45),
    n=st.integers(1, 30),
    capacity=st.integers(50, 600),
    share_of=st.integers(0, 600),
)
def test_the_share_of_any_amount_is_its_water_level(
    held: dict[int, int], emitter: int, n: int, capacity: int, share_of: int
) -> None:
    fair = FairShare(capacity, pressure=0.01)
    for e, q in held.items():
        fair.add(e, q)
    mine = held.get(emitter, 0)
    demands = [q for e, q in held.items() if e != emitter] + [mine + n]
    calm = fair.held + n <= fair.budget
    within = mine + n <= water_level(demands, share_of) or mine == 0
    assert fair.admits(emitter, n, share_of) is (calm or within)


@settings(max_examples=300, deadline=None)
@given(held=holdings, emitter=st.integers(0, 45), n=st.integers(1, 30), limit=st.integers(0, 600))
def test_a_snapshot_reckons_as_the_trees_do(
    held: dict[int, int], emitter: int, n: int, limit: int
) -> None:
    """Cluster mode reckons from the stream's counts read at once (sorted, no trees): the
    same level and the same admissions as the trees, the level being the water level."""
    fair = FairShare(1200)
    for e, q in held.items():
        fair.add(e, q)
    snap = fairness.Snapshot(held.values())
    assert snap.level(limit) == fair.level(limit)
    water = water_level(list(held.values()), limit)
    assert snap.level(limit) == (limit if water == float("inf") else int(water))
    mine = held.get(emitter, 0)
    assert snap.within(mine, mine, n, limit) is fair.within(emitter, n, limit)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["add", "remove"]), st.integers(0, 9), st.integers(1, 20)),
        max_size=200,
    )
)
def test_the_trees_follow_every_arrival_and_departure(steps: list[tuple[str, int, int]]) -> None:
    fair = FairShare(1000)
    truth: dict[int, int] = {}
    for op, e, n in steps:
        if op == "add":
            fair.add(e, n)
            truth[e] = truth.get(e, 0) + n
        else:
            fair.remove(e, n)
            truth[e] = max(0, truth.get(e, 0) - n)
        truth = {k: v for k, v in truth.items() if v}
        assert fair.holding == truth and fair.held == sum(truth.values())
        for x in (0, 1, 5, 17, 60, 999, 1000):
            assert fair.below(x) == sum(min(q, x) for q in truth.values())


def test_within_the_budget_everyone_is_admitted_past_it_the_shares_and_when_full_no_one() -> None:
    fair = FairShare(100, pressure=0.5)  # a budget of 50
    fair.add("bursty", 40)
    assert fair.admits("bursty", 10) and fair.fair_share() == 50
    fair.add("quiet", 5)
    # Past the budget: the quiet one keeps its 5, the bursty one's share is the other 45.
    assert fair.admits("bursty", 5) and not fair.admits("bursty", 6)
    fair.add("bursty", 5)
    # The quiet one is within its share, a newcomer holds nothing: both admitted, up to
    # the capacity itself.
    assert fair.admits("quiet", 5) and fair.admits("newcomer", 1)
    fair.add("newcomer", 49)
    assert fair.full(2) and not fair.full(1)  # room is the caller's to check
    # Held 99 of a budget of 50: the quiet one's 5 kept, the other two 22 each.
    assert fair.fair_share() == 22


def test_a_burst_leaves_room_for_a_thousand_quiet_emitters() -> None:
    fair = FairShare(4000, pressure=0.5)
    for i in range(500):
        fair.add(i, 1)  # half the quiet ones have a packet waiting
    while fair.admits("burst", 10):
        fair.add("burst", 10)
    # The burst stopped at its share of the budget: what the quiet ones hold left of 2,000.
    assert 1490 <= fair.holding["burst"] <= 1500
    # The other half of the quiet ones, holding nothing, still come in; the burst does not.
    assert all(fair.admits(i, 1) for i in range(500, 1000))
    assert not fair.admits("burst", 10) and not fair.full(1)


def test_the_work_of_an_admission_does_not_grow_with_the_emitters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = {"n": 0}
    original_add, original_prefix = fairness.Fenwick.add, fairness.Fenwick.prefix

    def counting_add(self: Any, index: int, delta: int) -> None:
        calls["n"] += 1
        original_add(self, index, delta)

    def counting_prefix(self: Any, index: int) -> int:
        calls["n"] += 1
        return original_prefix(self, index)

    monkeypatch.setattr(fairness.Fenwick, "add", counting_add)
    monkeypatch.setattr(fairness.Fenwick, "prefix", counting_prefix)

    def cost(emitters: int) -> int:
        fair = FairShare(1 << 16, pressure=0.0001)  # past the budget: the shares decide
        for i in range(emitters):
            fair.add(i, 1 + i % 5)
        calls["n"] = 0
        fair.admits(7, 3)
        fair.add(7, 3)
        fair.remove(7, 3)
        return calls["n"]

    # Tree calls, each walking at most log2(capacity) + 1 entries, whatever the emitters.
    assert cost(10) == cost(20_000) <= 10  # 2 lookups to admit, 4 updates to add, 4 to remove
