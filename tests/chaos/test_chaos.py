"""Faults injected into real processes; every scenario counts sent, delivered, duplicates, lost.

Run alone with `pytest -m chaos -s`; the table also goes to test-artifacts/chaos.json.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.pipeline import Pipeline
from tests.support.procs import Procs, get, wait_for

pytestmark = pytest.mark.chaos

WEIGHTS = {"a1": 0.5, "a2": 0.3, "a3": 0.2}
THREE = {"e1": "1-10", "e2": "1-10", "e3": "1-10"}


def finish(p: Pipeline, report: dict[str, Any]) -> None:
    p.quiesce(timeout=90)
    accounting = p.accounting()
    report.update(accounting)
    assert accounting["sent"] > 0
    assert accounting["lost"] == 0, accounting


def test_analyzers_killed_and_restarted_at_random_for_30s(
    procs: Procs, report: dict[str, Any]
) -> None:
    p = Pipeline(procs, WEIGHTS)
    p.start(THREE, 60)
    rand = random.Random(7)
    kills = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(rand.uniform(1.5, 3.0))
        aid = rand.choice(list(WEIGHTS))
        port = p.analyzers[aid].port
        p.analyzers[aid].kill()
        kills += 1
        time.sleep(rand.uniform(0.3, 1.5))
        p.start_analyzer(aid, port)
    wait_for(lambda: all(a["health"] == "up" for a in p.registry()), 10, "all back up")
    report["kills"] = kills
    finish(p, report)


def test_distributor_killed_mid_run_and_restarted_on_its_spool(
    procs: Procs, report: dict[str, Any], tmp_path: Path
) -> None:
    p = Pipeline(procs, WEIGHTS)
    p.start(THREE, 80, "--spool-dir", str(tmp_path / "spool"))
    p.wait_messages(tuple(WEIGHTS), 1500)
    assert p.distributor is not None
    port = p.distributor.port
    p.distributor.kill()
    time.sleep(2)  # emitters meet a refused connection, keep their packets and back off
    restarted = p.start_distributor(port)
    wait_for(lambda: "event=spool_recovered" in restarted.output(), 10, "spool replay")
    report["replayed"] = get(f"{p.url}/status")["counters"]["replayed"]
    time.sleep(3)
    finish(p, report)


def test_an_analyzer_failing_a_third_of_requests(procs: Procs, report: dict[str, Any]) -> None:
    p = Pipeline(procs, WEIGHTS, analyzer_args={"a2": ["--fail-rate", "0.33"]})
    p.start(THREE, 80)
    p.wait_messages(tuple(WEIGHTS), 6000, timeout=60)
    report["injected_failures"] = p.stats("a2")["injected_failures"]
    report["retries"] = get(f"{p.url}/status")["counters"]["retries"]
    assert report["injected_failures"] > 0
    finish(p, report)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (held open until the test ends)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


def test_an_analyzer_that_accepts_and_never_answers(
    procs: Procs, report: dict[str, Any], silent_port: int
) -> None:
    # Two kinds of silence: `mute` accepts connections and answers nothing, not even /health;
    # a3 answers /health but never an ingest, so forwards to it time out (after 1 s).
    p = Pipeline(procs, WEIGHTS, analyzer_args={"a3": ["--delay", "3600"]})
    p.start(THREE, 60, "--forward-timeout", "1")
    result = p.procs.run(
        "ctl", "add", "mute", f"http://127.0.0.1:{silent_port}/ingest", "--url", p.url
    )
    assert result.returncode == 0
    time.sleep(2)
    before = p.messages("a1", "a2")
    time.sleep(5)
    after = p.messages("a1", "a2")
    flowed = sum(after.values()) - sum(before.values())
    status = get(f"{p.url}/status")
    report["a1_a2_msgs_in_5s"] = flowed
    report["forward_failures"] = status["counters"]["forward_failures"]
    # Three emitters at 60 packets/s of 1-10 messages offer ~5,000 messages in 5 s.
    assert flowed > 3000
    assert report["forward_failures"] > 0
    assert next(a for a in p.registry() if a["id"] == "mute")["health"] != "up"
    finish(p, report)


def test_a_slow_analyzer_keeps_its_share_and_the_others_their_pace(
    procs: Procs, report: dict[str, Any]
) -> None:
    # Policy: a slow analyzer keeps its share while it keeps up (fewer than max_pending packets
    # unacknowledged); past that it is passed over and gets only what it can absorb.
    p = Pipeline(procs, WEIGHTS, analyzer_args={"a3": ["--delay", "0.2"]})
    p.start(THREE, 80)
    counts = p.wait_messages(tuple(WEIGHTS), 6000, timeout=60)
    total = sum(counts.values())
    report["slow_share"] = round(counts["a3"] / total, 4)
    assert abs(counts["a3"] / total - 0.2) < 0.03
    finish(p, report)


def test_all_analyzers_down_for_10s_backpressure_reaches_the_emitters(
    procs: Procs, report: dict[str, Any]
) -> None:
    p = Pipeline(procs, WEIGHTS)
    p.start(THREE, 60, "--queue-capacity", "300")
    p.wait_messages(tuple(WEIGHTS), 500)
    ports = {aid: proc.port for aid, proc in p.analyzers.items()}
    for proc in p.analyzers.values():
        proc.kill()
    time.sleep(10)
    status = get(f"{p.url}/status")
    buffered = [get(f"{p.url}/emitter/{e}/metrics") for e in p.emitters]
    report["queue_during_outage"] = status["queue"]["depth"]
    rejected = status["counters"]["rejected"]
    report["refused_503"] = rejected.get("backpressure", 0)
    report["refused_429"] = rejected.get("throttled", 0)
    report["emitter_buffers"] = [m["buffer_len"] for m in buffered]
    # Full, not more: the last places are kept, one for each other emitter (fair admission),
    # so the emitters that hold the rest are told 429, and any one of them 503 at the end.
    assert 300 - len(p.emitters) <= status["queue"]["depth"] <= 300
    assert report["refused_503"] + report["refused_429"] > 0
    assert sum(report["emitter_buffers"]) > 0
    for aid, port in ports.items():
        p.start_analyzer(aid, port)
    finish(p, report)
