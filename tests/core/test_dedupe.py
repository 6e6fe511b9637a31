from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from logdist.core.dedupe import DedupeWindow


def test_window_reports_first_deliveries_only() -> None:
    w = DedupeWindow(10)
    assert [w.add(x) for x in "abcab"] == [True, True, True, False, False]
    assert list(w) == ["a", "b", "c"]


def test_window_forgets_the_oldest_first() -> None:
    w = DedupeWindow(2)
    for x in "abc":
        w.add(x)
    assert "a" not in w and "b" in w and "c" in w
    assert w.evicted == 1


@given(st.lists(st.integers(0, 50)), st.integers(1, 20))
def test_window_never_exceeds_its_capacity(keys: list[int], capacity: int) -> None:
    w = DedupeWindow(capacity)
    for k in keys:
        w.add(str(k))
        assert len(w) <= capacity


def test_a_full_window_keeps_forgetting_in_arrival_order() -> None:
    w = DedupeWindow(3)
    for x in "abcdefg":
        assert w.add(x)
    assert list(w) == ["e", "f", "g"] and w.evicted == 4
    assert not w.add("f") and w.add("a")
    assert list(w) == ["f", "g", "a"]


@given(
    st.lists(st.lists(st.integers(0, 60), max_size=12), max_size=15),
    st.integers(1, 25),
)
def test_adding_a_batch_at_once_is_adding_it_one_by_one(
    batches: list[list[int]], capacity: int
) -> None:
    bulk, single = DedupeWindow(capacity), DedupeWindow(capacity)
    for batch in batches:
        keys = [str(k) for k in batch]
        new = [single.add(k) for k in keys]
        if bulk.add_all(keys):
            assert all(new)  # taken at once only when every key is a first delivery
        else:
            assert [bulk.add(k) for k in keys] == new
        assert list(bulk) == list(single) and bulk.evicted == single.evicted
        assert len(bulk) <= capacity
