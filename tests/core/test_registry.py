from __future__ import annotations

from collections import Counter

import pytest

from logdist.core.checks import check_url
from logdist.core.delivery import Delivery
from logdist.core.registry import PASSIVE_RETRY_CAP, AdminState, Health, Registry
from logdist.errors import AnalyzerExists, InvalidRequest, UnknownAnalyzer
from tests.support.clock import FakeClock


def make(rise: int = 2, fall: int = 3, max_pending: int = 100, **weights: float) -> Registry:
    reg = Registry(now=FakeClock(), rise=rise, fall=fall, max_pending=max_pending)
    for aid, w in weights.items():
        reg.add(aid, f"http://127.0.0.1:9000/{aid}", w)
        reg.record_success(aid)
    return reg


def shares(reg: Registry, n: int, cost: int = 1) -> dict[str, float]:
    got: Counter[str] = Counter()
    for _ in range(n):
        a = reg.assign(cost)
        assert a is not None
        got[a.id] += cost
        reg.release(a.id)
    total = sum(got.values())
    return {k: v / total for k, v in got.items()}


def test_a_new_analyzer_is_not_routable_until_its_first_successful_check() -> None:
    reg = Registry(now=FakeClock())
    reg.add("a1", "http://127.0.0.1:9001/ingest", 1)
    assert reg.get("a1").health is Health.UNKNOWN
    assert reg.assign(1) is None
    change = reg.record_success("a1", batch=True)
    assert change is not None and change.new is Health.UP
    assert reg.get("a1").batch is True
    assert reg.assign(1) is not None


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ("ok", Health.UP),
        ("ok fail fail", Health.UP),
        ("ok fail fail fail", Health.DOWN),
        ("ok fail fail ok fail fail", Health.UP),  # a success resets the count
        ("ok fail fail fail ok", Health.DOWN),  # rise 2: one success is not enough
        ("ok fail fail fail ok ok", Health.UP),
        ("ok fail fail fail ok fail ok ok", Health.UP),
        ("fail fail fail", Health.DOWN),
        ("fail fail", Health.UNKNOWN),
    ],
)
def test_rise_and_fall_like_haproxy(events: str, expected: Health) -> None:
    reg = Registry(now=FakeClock(), rise=2, fall=3)
    reg.add("a1", "http://127.0.0.1:9001/ingest", 1)
    for e in events.split():
        if e == "ok":
            reg.record_success("a1")
        else:
            reg.record_failure("a1", "connect failed")
    assert reg.get("a1").health is expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ("ok fwd-fail fwd-fail", Health.UP),
        ("ok fwd-fail fwd-fail fwd-fail", Health.DOWN),
        ("ok fwd-fail ok fwd-fail ok fwd-fail", Health.DOWN),  # good probes do not excuse it
        ("ok fwd-fail fwd-fail fwd-ok fwd-fail fwd-fail", Health.UP),
        ("ok fwd-fail fwd-fail fwd-fail ok", Health.DOWN),
        ("ok fwd-fail fwd-fail fwd-fail ok ok", Health.UP),
        ("ok fwd-fail fwd-fail fwd-fail ok ok fwd-fail", Health.UP),  # the count starts afresh
        ("ok fail fwd-fail fail fwd-fail", Health.UP),  # the two counts are apart
    ],
)
def test_failed_forwards_mark_down_even_while_probes_pass(events: str, expected: Health) -> None:
    reg = Registry(now=FakeClock(), rise=2, fall=3)
    reg.add("a1", "http://127.0.0.1:9001/ingest", 1)
    for e in events.split():
        if e == "ok":
            reg.record_success("a1")
        elif e == "fail":
            reg.record_failure("a1", "probe failed")
        elif e == "fwd-ok":
            reg.record_success("a1", passive=True)
        else:
            reg.record_failure("a1", "HTTP 500", passive=True)
    assert reg.get("a1").health is expected


def test_health_changes_are_reported_once_with_the_reason() -> None:
    reg = make(fall=2, a1=1)
    assert reg.record_failure("a1", "timeout") is None
    change = reg.record_failure("a1", "HTTP 500")
    assert change is not None
    assert (change.old, change.new, change.reason) == (Health.UP, Health.DOWN, "HTTP 500")
    assert reg.record_failure("a1", "HTTP 500") is None
    assert reg.get("a1").last_error == "HTTP 500"
    assert reg.get("a1").downs == 1


@pytest.mark.parametrize("state", [AdminState.DISABLED, AdminState.DRAINING])
def test_disabled_and_draining_analyzers_take_nothing_new(state: AdminState) -> None:
    reg = make(a1=1, a2=1)
    reg.set_admin("a2", state)
    assert {reg.assign(1).id for _ in range(10)} == {"a1"}  # type: ignore[union-attr]
    assert reg.target_shares() == {"a1": 1.0, "a2": 0.0}
    reg.set_admin("a2", AdminState.ENABLED)
    assert shares(reg, 100) == {"a1": 0.5, "a2": 0.5}


def test_draining_analyzer_reports_drained_once_its_pending_packets_settle() -> None:
    reg = make(a1=1)
    a = reg.assign(1)
    assert a is not None
    reg.set_admin("a1", AdminState.DRAINING)
    assert reg.to_json()[0]["drained"] is False
    reg.release("a1")
    assert reg.to_json()[0]["drained"] is True


def test_down_analyzer_share_goes_to_the_rest_in_proportion() -> None:
    reg = make(fall=1, w1=0.1, w4=0.4, w2=0.2, w3=0.3)
    reg.record_failure("w4", "connect failed")
    got = shares(reg, 6000, cost=3)
    assert got.keys() == {"w1", "w2", "w3"}
    assert got["w1"] == pytest.approx(1 / 6, abs=0.002)
    assert got["w2"] == pytest.approx(1 / 3, abs=0.002)
    assert got["w3"] == pytest.approx(1 / 2, abs=0.002)
    assert reg.target_shares()["w3"] == pytest.approx(0.5)


def test_removed_analyzer_share_goes_to_the_rest_in_proportion() -> None:
    reg = make(a=0.5, b=0.3, c=0.2)
    reg.remove("b")
    assert shares(reg, 700) == pytest.approx({"a": 5 / 7, "c": 2 / 7}, abs=0.002)
    assert "b" not in reg


def test_a_full_analyzer_keeps_its_turn_while_it_settles_requests() -> None:
    clock = FakeClock()
    reg = Registry(now=clock, max_pending=2, stall_after=1.0)
    for aid in ("busy", "other"):
        reg.add(aid, f"http://127.0.0.1:9000/{aid}", 1)
        reg.record_success(aid)
    picks = [reg.assign(1) for _ in range(6)]
    assert [p.id for p in picks if p is not None].count("busy") == 3  # its share, not skipped
    busy = reg.get("busy")
    assert reg.full(busy) and not reg.check_stall(busy)
    clock.advance(0.9)
    reg.release("busy")  # a request settled: busy, not stalled
    clock.advance(0.9)
    assert not reg.check_stall(busy)
    assert "busy" in [p.id for p in (reg.assign(1), reg.assign(1)) if p is not None]


def test_a_full_analyzer_that_settles_nothing_is_stalled_and_passed_over() -> None:
    clock = FakeClock()
    reg = Registry(now=clock, max_pending=2, stall_after=1.0)
    for aid in ("hung", "ok"):
        reg.add(aid, f"http://127.0.0.1:9000/{aid}", 1)
        reg.record_success(aid)
    while not reg.full(reg.get("hung")):
        reg.assign(1)
    clock.advance(1.0)
    assert reg.check_stall(reg.get("hung"))
    assert {p.id for p in (reg.assign(1) for _ in range(5)) if p is not None} == {"ok"}
    # Taking packets back unsent is no sign of life; a settled request is.
    reg.release("hung", 1, settled=False)
    assert {p.id for p in (reg.assign(1) for _ in range(5)) if p is not None} == {"ok"}
    reg.release("hung", 1)
    assert "hung" in {p.id for p in (reg.assign(1) for _ in range(4)) if p is not None}


def test_reweighting_takes_effect_at_once() -> None:
    reg = make(a=1, b=1)
    reg.set_weight("a", 3)
    assert shares(reg, 400) == {"a": 0.75, "b": 0.25}
    assert reg.target_shares() == {"a": 0.75, "b": 0.25}


def test_exclude_sends_a_failed_packet_elsewhere() -> None:
    reg = make(a=100, b=1)
    picked = reg.assign(1, exclude="a")
    assert picked is not None and picked.id == "b"


@pytest.mark.parametrize(
    ("aid", "url", "weight", "error"),
    [
        ("", "http://127.0.0.1:1/x", 1, "analyzer id"),
        ("a b", "http://127.0.0.1:1/x", 1, "analyzer id"),
        ("a" * 65, "http://127.0.0.1:1/x", 1, "analyzer id"),
        ("a1", "ftp://host/x", 1, "http"),
        ("a1", "127.0.0.1:9001", 1, "http"),
        ("a1", "http://:9001/x", 1, "http"),
        ("a1", "http://127.0.0.1:99999/x", 1, "not valid"),
        ("a1", 42, 1, "url must be a string"),
        ("a1", "http://127.0.0.1:1/x", 0, "weight"),
        ("a1", "http://127.0.0.1:1/x", "heavy", "weight"),
    ],
)
def test_bad_analyzers_are_refused_with_the_reason(
    aid: str, url: str, weight: float, error: str
) -> None:
    reg = Registry(now=FakeClock())
    with pytest.raises(InvalidRequest, match=error):
        reg.add(aid, url, weight)
    assert len(reg) == 0


def test_duplicate_and_unknown_ids() -> None:
    reg = make(a1=1)
    with pytest.raises(AnalyzerExists):
        reg.add("a1", "http://127.0.0.1:1/x", 1)
    with pytest.raises(UnknownAnalyzer, match="nope"):
        reg.remove("nope")
    with pytest.raises(UnknownAnalyzer):
        reg.set_weight("nope", 1)
    assert reg.record_success("nope") is None
    assert reg.record_failure("nope", "x") is None


def test_check_url_accepts_ordinary_urls() -> None:
    for url in (
        "http://127.0.0.1:9001/ingest",
        "https://logs.example/api/v1/ingest",
        "http://[::1]:80/x",
    ):
        assert check_url(url) == url


PASSIVE = Delivery(health="passive")


def passive_registry(rise: int = 2, fall: int = 3) -> Registry:
    reg = Registry(now=FakeClock(), rise=rise, fall=fall)
    reg.add("a1", "http://127.0.0.1:9001/ingest", 1, PASSIVE)
    return reg


def test_an_analyzer_with_passive_health_takes_packets_at_once_and_is_up_on_its_first_forward() -> (
    None
):
    reg = passive_registry()
    assert reg.get("a1").health is Health.UNKNOWN and reg.get("a1").routable
    assert reg.assign(1) is not None
    change = reg.record_success("a1", passive=True)
    assert change is not None and change.new is Health.UP


@pytest.mark.parametrize(
    ("events", "expected", "routable"),
    [
        ("ok fail fail", Health.UP, True),
        ("ok fail fail fail", Health.DOWN, False),
        ("ok fail fail fail retry", Health.UNKNOWN, True),  # tried again after a back-off
        ("ok fail fail fail retry fail", Health.DOWN, False),  # a trial ends at one failure
        ("ok fail fail fail retry ok", Health.UNKNOWN, True),  # rise 2: one is not enough
        ("ok fail fail fail retry ok ok", Health.UP, True),
        ("fail", Health.DOWN, False),  # never up yet: the first trial ends at one failure
        ("ok fail fail fail probe-ok probe-ok", Health.DOWN, False),  # probes do not count
    ],
)
def test_passive_health_is_judged_by_forwards_alone(
    events: str, expected: Health, routable: bool
) -> None:
    reg = passive_registry()
    for e in events.split():
        if e == "ok":
            reg.record_success("a1", passive=True)
        elif e == "fail":
            reg.record_failure("a1", "connect failed", passive=True)
        elif e == "retry":
            assert reg.retry_delay("a1") is not None
            assert reg.try_again("a1") is not None
        elif e == "probe-ok":
            reg.record_success("a1")
    a1 = reg.get("a1")
    assert (a1.health, a1.routable) == (expected, routable)
    assert reg.has_room() is routable


def test_a_passive_analyzer_that_keeps_failing_is_tried_again_at_longer_intervals_up_to_5s() -> (
    None
):
    reg = passive_registry()
    delays = []
    reg.record_failure("a1", "connect failed", passive=True)
    for _ in range(8):
        delay = reg.retry_delay("a1")
        assert delay is not None
        delays.append(delay)
        reg.try_again("a1")
        reg.record_failure("a1", "connect failed", passive=True)
    assert delays == sorted(delays) and delays[0] < delays[-1]
    assert delays[-1] == PASSIVE_RETRY_CAP == 5.0
    # Once it is up again the back-off starts afresh.
    reg.try_again("a1")
    reg.record_success("a1", passive=True)
    reg.record_success("a1", passive=True)
    for _ in range(3):
        reg.record_failure("a1", "connect failed", passive=True)
    assert reg.retry_delay("a1") == delays[0]


def test_an_actively_probed_analyzer_has_no_passive_retry() -> None:
    reg = make(fall=1, a1=1)
    reg.record_failure("a1", "HTTP 500", passive=True)
    assert reg.get("a1").health is Health.DOWN
    assert reg.retry_delay("a1") is None and reg.try_again("a1") is None


def test_switching_to_passive_health_puts_a_down_analyzer_on_trial_and_back() -> None:
    reg = make(fall=1, a1=1, a2=1)
    reg.record_failure("a1", "health HTTP 404")
    assert not reg.get("a1").routable
    reg.set_delivery("a1", PASSIVE)
    assert reg.get("a1").routable and reg.get("a1").trial
    reg.set_delivery("a1", Delivery())
    assert not reg.get("a1").routable  # probes judge it again


def test_a_held_analyzer_takes_nothing_new_until_released() -> None:
    reg = make(a1=1, a2=1)
    reg.hold("a1", True)
    assert {reg.assign(1).id for _ in range(10)} == {"a2"}  # type: ignore[union-attr]
    assert reg.get("a1").routable  # healthy: only held back
    reg.hold("a1", False)
    assert {reg.assign(1).id for _ in range(10)} == {"a1", "a2"}  # type: ignore[union-attr]


def test_routable_count_follows_health_and_admin_state() -> None:
    reg = make(fall=1, a1=1, a2=1, a3=1)
    assert reg.routable_count == 3
    reg.record_failure("a1", "x")
    reg.set_admin("a2", AdminState.DISABLED)
    assert reg.routable_count == 1


def test_the_format_decides_whether_forwards_carry_batches() -> None:
    reg = make(a1=1)
    a1 = reg.get("a1")
    for fmt, probed, batches in [
        ("auto", False, False),
        ("auto", True, True),
        ("ndjson", False, True),
        ("json-array", False, True),
        ("json", True, False),
    ]:
        reg.set_delivery("a1", Delivery(format=fmt))
        a1.batch = probed
        assert a1.batches is batches, fmt
        assert a1.to_json(1.0)["batch"] is batches
