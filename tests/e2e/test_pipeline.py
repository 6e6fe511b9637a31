"""The whole pipeline through the real CLI: shares, failover, recovery, and zero loss."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.pipeline import Pipeline, elapsed
from tests.support.procs import Procs, get, wait_for

pytestmark = pytest.mark.e2e

WEIGHTS = {"a1": 0.5, "a2": 0.3, "a3": 0.2}
EMITTERS = {"e1": "1-20", "e2": "1-20"}


def test_shares_failover_recovery_and_zero_loss(procs: Procs, artifacts: Path) -> None:
    p = Pipeline(procs, WEIGHTS)
    p.start(EMITTERS, rate=100)
    report: dict[str, object] = {}

    # 1. After >= 5,000 messages each analyzer's message share is within 2 points of its weight.
    counts = p.wait_messages(tuple(WEIGHTS), 5000)
    total = sum(counts.values())
    shares = {aid: counts[aid] / total for aid in WEIGHTS}
    report["steady"] = {"messages": total, "shares": shares}
    for aid, weight in WEIGHTS.items():
        assert abs(shares[aid] - weight) <= 0.02, shares

    # 2. SIGKILL a2 mid-run: its share goes to a1 and a3 in proportion (5:2).
    p.analyzers["a2"].kill()
    wait_for(lambda: p.health("a2") == "down", 10, "a2 marked down")
    before = p.messages("a1", "a3")
    after = p.wait_messages(("a1", "a3"), sum(before.values()) + 3000)
    delta = {aid: after[aid] - before[aid] for aid in before}
    a1_share = delta["a1"] / sum(delta.values())
    report["a2_down"] = {"messages": sum(delta.values()), "a1_share": a1_share, "expected": 5 / 7}
    assert abs(a1_share - 5 / 7) <= 0.03, delta

    # 3. Restarted on its port, a2 takes traffic again within 3 s.
    started = time.monotonic()
    p.start_analyzer("a2", port=p.analyzers["a2"].port)
    wait_for(lambda: p.stats("a2")["messages"] > 0, 10, "a2 to receive again")
    back_after = report["a2_back_after_s"] = elapsed(started)
    assert back_after <= 3.0

    # 4. Every packet the emitters delivered reached some analyzer.
    p.quiesce()
    accounting = p.accounting()
    report["accounting"] = accounting
    (artifacts / "e2e-pipeline.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    assert accounting["sent"] >= 500
    assert accounting["lost"] == 0


def test_all_analyzers_down_for_5s_then_back_loses_nothing(procs: Procs, artifacts: Path) -> None:
    p = Pipeline(procs, WEIGHTS)
    p.start(EMITTERS, rate=100)
    p.wait_messages(tuple(WEIGHTS), 1000)
    ports = {aid: proc.port for aid, proc in p.analyzers.items()}
    for proc in p.analyzers.values():
        proc.kill()
    down_at = time.monotonic()
    wait_for(lambda: all(a["health"] == "down" for a in p.registry()), 10, "all down")
    # The emitters keep sending for 5 s; the distributor holds what it accepted.
    wait_for(lambda: time.monotonic() - down_at >= 5, 10, "5 s of outage", 0.2)
    held = get(f"{p.url}/status")["queue"]
    assert held["depth"] > 0
    for aid, port in ports.items():
        p.start_analyzer(aid, port=port)
    wait_for(lambda: get(f"{p.url}/status")["queue"]["depth"] == 0, 20, "queue drained")
    p.quiesce()
    accounting = p.accounting()
    report = {"held_during_outage": held, "accounting": accounting}
    (artifacts / "e2e-outage.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    assert accounting["lost"] == 0
    assert accounting["sent"] >= 500
