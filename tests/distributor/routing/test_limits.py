"""Per-emitter rate limits (routing.limits) with a fake clock: a token bucket of messages per
emitter, overrides by id and prefix, runtime changes kept in the state dir, 429s counted."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from logdist.config.tables import EmitterLimit, LimitsConfig
from logdist.config.topology import topology_from_dict
from logdist.distributor.routing import limits as limits_module
from logdist.distributor.routing.limits import Limits
from logdist.distributor.routing.shares import SPELL_QUIET, Shares
from logdist.errors import ConfigError, InvalidRequest, NotFound, StateWriteFailed, Throttled
from logdist.formats.packet import Packet
from tests.distributor.conftest import MakeDistributor
from tests.support.clock import FakeClock
from tests.support.fakes import eventually, start_analyzer


def packet(emitter: str | None, messages: int = 1, i: int = 0) -> Packet:
    return Packet(id=f"{emitter}-{i}", emitter=emitter, messages=messages, body=b"{}")


def sent(limits: Limits, emitter: str | None, messages: int = 1) -> bool:
    try:
        limits.check([packet(emitter, messages)], lambda *a, **k: None)
    except Throttled:
        return False
    return True


def test_an_emitter_past_its_rate_is_refused_until_its_bucket_refills() -> None:
    clock = FakeClock()
    limits = Limits(LimitsConfig(rate=10, burst=20), now=clock)
    assert sum(sent(limits, "web-1") for _ in range(50)) == 20  # the burst, then nothing
    with pytest.raises(Throttled) as refused:
        limits.check([packet("web-1", 5)], lambda *a, **k: None)
    assert refused.value.retry_after == 1  # 5 messages at 10/s: half a second, rounded up
    assert refused.value.detail == {"emitter": "web-1", "rate": 10.0, "burst": 20.0}
    assert sent(limits, "web-2")  # each emitter has its own bucket
    clock.advance(0.5)
    assert sum(sent(limits, "web-1") for _ in range(50)) == 5
    clock.advance(100)
    assert sum(sent(limits, "web-1") for _ in range(50)) == 20  # never more than the burst


def test_without_a_burst_it_is_a_seconds_worth() -> None:
    limits = Limits(LimitsConfig(rate=7), now=FakeClock())
    assert sum(sent(limits, "a") for _ in range(20)) == 7


def test_a_request_larger_than_the_burst_passes_when_the_bucket_is_full() -> None:
    clock = FakeClock()
    limits = Limits(LimitsConfig(rate=10, burst=10), now=clock)
    assert sent(limits, "a", 500)  # never too large to pass...
    assert not sent(limits, "a")  # ...but it is paid for: 49 s of debt
    clock.advance(48)
    assert not sent(limits, "a")
    clock.advance(2)
    assert sent(limits, "a")


def test_nothing_is_taken_from_a_request_that_is_refused() -> None:
    limits = Limits(LimitsConfig(rate=10), now=FakeClock())
    assert sent(limits, "b", 10)  # b's bucket is empty now
    run = Packet("r", None, 6, b"{}", emitters=["a", "b"], counts=[3, 3], count=2)
    with pytest.raises(Throttled):
        limits.check([run], lambda *a, **k: None)
    assert sent(limits, "a", 10)  # a was charged nothing for the refused run


def test_which_limit_holds_runtime_then_configured_then_longest_prefix_then_default() -> None:
    cfg = LimitsConfig(
        rate=100,
        emitters=(
            EmitterLimit("web-*", 10),
            EmitterLimit("web-eu-*", 20),
            EmitterLimit("web-eu-7", 30),
            EmitterLimit("batch", 0),  # exempt from the default
        ),
    )
    limits = Limits(cfg, now=FakeClock())

    def rate(emitter: str | None) -> float | None:
        limit = limits.limit_for(emitter)
        return limit.rate if limit is not None else None

    assert [rate(e) for e in ("web-1", "web-eu-1", "web-eu-7", "batch", "db", None)] == [
        10,
        20,
        30,
        None,
        100,
        100,
    ]
    limits.set("web-eu-*", 5)
    assert rate("web-eu-7") == 30  # an exact id still wins over a prefix
    assert rate("web-eu-1") == 5
    limits.set("web-eu-7", 0)
    assert rate("web-eu-7") is None
    limits.clear("web-eu-7")
    assert rate("web-eu-7") == 30


def test_no_limit_anywhere_costs_nothing() -> None:
    limits = Limits(LimitsConfig(), now=FakeClock())
    assert not limits.active
    limits.set("x", 0)
    assert not limits.active  # a limit of 0 limits nothing
    limits.set("x", 1)
    assert limits.active and sent(limits, "x") and not sent(limits, "x")
    assert sent(limits, "y")


def test_runtime_limits_are_kept_in_the_state_dir(tmp_path: Path) -> None:
    limits = Limits(LimitsConfig(), str(tmp_path), now=FakeClock())
    limits.set("web-*", 50, 200)
    limits.set("db-1", 5)
    again = Limits(LimitsConfig(), str(tmp_path), now=FakeClock())
    assert again.to_json()["runtime"] == [
        {"emitter": "web-*", "rate": 50.0, "burst": 200.0},
        {"emitter": "db-1", "rate": 5.0, "burst": 5.0},
    ]
    again.clear("db-1")
    assert [r["emitter"] for r in Limits(LimitsConfig(), str(tmp_path)).to_json()["runtime"]] == [
        "web-*"
    ]
    (tmp_path / "limits.json").write_text("{not json")
    with pytest.raises(ConfigError, match="limits.json"):
        Limits(LimitsConfig(), str(tmp_path))


@pytest.mark.parametrize(
    ("pattern", "rate", "burst", "says"),
    [
        ("web-*", -1, None, "rate must be >= 0"),
        ("web-*", "fast", None, "rate must be a number"),
        ("web-*", None, None, "rate must be a number"),
        ("web-*", 10, 0.5, "burst must be at least 1"),
        ("w*b", 10, None, "an id prefix ending in \\*"),
        ("", 10, None, "an id prefix ending in \\*"),
    ],
)
def test_a_bad_runtime_limit_says_what_is_wrong(
    pattern: str, rate: object, burst: object, says: str
) -> None:
    limits = Limits(LimitsConfig())
    with pytest.raises(InvalidRequest, match=says):
        limits.set(pattern, rate, burst)
    assert not limits.runtime


def test_clearing_a_limit_never_set_is_not_found() -> None:
    with pytest.raises(NotFound, match="no limit was set at runtime for 'web-\\*'"):
        Limits(LimitsConfig()).clear("web-*")


def test_buckets_are_pruned_of_emitters_that_refilled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits_module, "PRUNE_AT", 100)
    clock = FakeClock()
    limits = Limits(LimitsConfig(rate=1), now=clock)
    for i in range(10_000):
        sent(limits, f"e{i}")
        clock.advance(0.01)
    assert len(limits.buckets) <= 200  # those that refilled (as good as new) are dropped


def test_toml_limits(tmp_path: Path) -> None:
    data: dict[str, Any] = {
        "distributor": {
            "limits": {
                "rate": 1000,
                "burst": 5000,
                "emitters": {"web-*": {"rate": 50, "burst": 100}, "db-1": 5},
            }
        },
        "analyzers": [{"id": "a1", "url": "http://127.0.0.1:9/ingest"}],
    }
    limits = topology_from_dict(data, "t.toml").distributor.limits
    assert (limits.rate, limits.burst) == (1000, 5000)
    assert limits.emitters == (EmitterLimit("web-*", 50, 100), EmitterLimit("db-1", 5))
    data["distributor"]["limits"]["emitters"] = {"web-*": {"rate": 5, "every": 2}}
    with pytest.raises(ConfigError, match="'web-\\*' must be a rate or"):
        topology_from_dict(data, "t.toml")


def test_refusals_are_counted_and_logged_with_the_fair_shares(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "logdist.distributor")
    clock = FakeClock()
    shares = Shares(lambda: 10_000, 0.5, retry_after=1, now=clock)
    shares.limits = Limits(LimitsConfig(rate=2, burst=2), now=clock)
    outcomes = []
    for _ in range(5):
        try:
            shares.check([packet("web-1")])
            outcomes.append(True)
        except Throttled:
            outcomes.append(False)
    assert outcomes == [True, True, False, False, False]
    assert shares.throttled["web-1"] == 3
    clock.advance(1)
    shares.check([packet("web-1")])
    # Paced by its limit (admitted, refused, admitted...) it is one spell, ended once quiet.
    shares.check([packet("web-1")])  # the second of its two tokens
    with pytest.raises(Throttled):
        shares.check([packet("web-1")])
    clock.advance(SPELL_QUIET)
    assert shares.end_spells() == 1
    events = [r.getMessage() for r in caplog.records]
    assert sum("emitter_throttled" in m for m in events) == 1
    assert any("emitter_throttle_ended" in m and "refused=4" in m for m in events)


async def test_limits_over_http_set_enforced_listed_and_cleared(
    aiohttp_server: Any, make_distributor: MakeDistributor, tmp_path: Path
) -> None:
    fake, url = await start_analyzer(aiohttp_server)
    client = await make_distributor({"a1": (url, 1)}, state_dir=str(tmp_path))

    async def send(emitter: str, i: int) -> int:
        body = {"packetId": f"{emitter}-{i}", "emitter": emitter, "messages": [{}, {}]}
        return (await client.post("/log-packet", json=body)).status

    assert [await send("web-1", i) for i in range(5)] == [202] * 5  # no limit yet
    resp = await client.put("/limits/web-*", json={"rate": 0.5, "burst": 4})
    assert resp.status == 200
    assert await resp.json() == {
        "set": {"emitter": "web-*", "rate": 0.5, "burst": 4.0},
        "kept": True,
    }
    assert [await send("web-1", i) for i in range(5, 8)] == [202, 202, 429]
    resp = await client.post(
        "/log-packet", json={"packetId": "web-1-x", "emitter": "web-1", "messages": [{}]}
    )
    assert resp.status == 429 and resp.headers["Retry-After"] == "2"
    assert (await resp.json())["code"] == "throttled"
    assert await send("db-1", 0) == 202  # the prefix does not cover it
    listed = await (await client.get("/limits")).json()
    assert listed["runtime"] == [{"emitter": "web-*", "rate": 0.5, "burst": 4.0}]
    bad = await client.put("/limits/web-*", json={"rate": "fast"})
    assert bad.status == 422 and "rate must be a number" in (await bad.json())["error"]
    unknown = await client.put("/limits/web-*", json={"rate": 1, "every": 3})
    assert unknown.status == 422
    assert (await client.delete("/limits/nobody")).status == 404
    assert (await client.delete("/limits/web-*")).status == 200
    assert await send("web-1", 9) == 202
    metrics = await (await client.get("/metrics")).text()
    assert 'logdist_emitter_throttled_total{emitter="web-1"} 2.0' in metrics
    accepted = [f"web-1-{i}" for i in (0, 1, 2, 3, 4, 5, 6, 9)] + ["db-1-0"]
    await eventually(lambda: sorted(fake.ids) == sorted(accepted), 10, "every 202 delivered")


def test_cluster_mode_checks_only_the_limits(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "logdist.distributor")
    clock = FakeClock()
    shares = Shares(lambda: 10, 0.5, retry_after=1, now=clock)
    shares.limits = Limits(LimitsConfig(rate=1, burst=1), now=clock)
    shares.check_limits([packet("e1")])
    with pytest.raises(Throttled):
        shares.check_limits([packet("e1")])
    clock.advance(1)
    for i in range(20):  # what a replica publishes is not held here: no fair share applies
        shares.check_limits([packet(f"other{i}")])
    shares.check_limits([packet("e1")])
    clock.advance(SPELL_QUIET)
    shares.end_spells()
    events = [r.getMessage() for r in caplog.records]
    assert any("emitter_throttle_ended emitter=e1 refused=1" in m for m in events)


def test_a_state_dir_not_made_yet_is_made_and_one_that_cannot_be_written_changes_nothing(
    tmp_path: Path,
) -> None:
    limits = Limits(LimitsConfig(), str(tmp_path / "state" / "new"), now=FakeClock())
    limits.set("web-*", 5)
    assert (tmp_path / "state" / "new" / "limits.json").exists()
    stuck = Limits(LimitsConfig(), str(tmp_path / "taken"), now=FakeClock())
    (tmp_path / "taken").write_text("a file where the state dir should be")
    with pytest.raises(StateWriteFailed, match="cannot keep the limits") as failed:
        stuck.set("web-*", 5)
    assert failed.value.status == 500
    assert not stuck.runtime and not stuck.active  # not half made
