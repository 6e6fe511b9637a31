"""Fair admission end to end, real processes on loopback: a fleet of 1,000 steady emitters
beside one bursty emitter offered far more than two capped analyzers take; one analyzer
stopped mid-run; a per-emitter limit set at runtime with `ctl limit`. Nothing accepted is
lost, and the steady emitters are not the ones refused."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.support.procs import Procs, get, wait_for

pytestmark = pytest.mark.e2e


def delivered(paths: list[Path]) -> list[str]:
    ids = []
    for path in paths:
        if path.exists():
            ids += [json.loads(line)["packetId"] for line in path.read_bytes().splitlines()]
    return ids


def ctl(procs: Procs, *args: str) -> str:
    done = procs.run("ctl", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_burst_beside_a_thousand_steady_emitters_a_stopped_analyzer_and_a_runtime_limit(
    procs: Procs,
) -> None:
    outputs = [procs.workdir / f"a{i}.ndjson" for i in (1, 2)]
    analyzers = [
        procs.start(
            f"a{i}",
            "analyzer",
            "serve",
            "--id",
            f"a{i}",
            "--port",
            "0",
            "--delay",
            "0.02",
            "--output",
            str(out),
        )  # fmt: skip
        for i, out in zip((1, 2), outputs, strict=True)
    ]
    # Each analyzer takes 4 requests of one packet at a time, 20 ms each: 400 packets/s in all.
    d = procs.start(
        "distributor", "distributor", "serve", "--port", "0", "--queue-capacity", "1000",
        "--max-requests", "4", "--health-interval", "0.2",
        "--health-timeout", "0.5", "--fall", "2", "--rise", "2",
        *[a for i, an in enumerate(analyzers, 1)
          for a in ("-a", f"a{i}={an.url}/ingest;format=json")],
    )  # fmt: skip
    wait_for(lambda: all(a["health"] == "up" for a in get(f"{d.url}/registry")), 10, "up")
    steady = procs.fleets(1000, 0.2, d.url, "steady")["steady"]  # 200 packets/s
    wait_for(lambda: get(f"{steady.url}/metrics")["registered"] == 1000, 60, "registered", 0.5)
    burst = procs.start("burst", "emitter", "start", "--id", "burst", "--distributor", d.url,
                        "--rate", "4000", "--messages", "10-10")  # fmt: skip
    before = get(f"{steady.url}/metrics")
    time.sleep(6)
    calm = get(f"{steady.url}/metrics")
    attempts = calm["sent_packets"] - before["sent_packets"]
    assert attempts > 900  # the steady emitters kept sending, and were not the ones refused:
    assert calm["retries"] - before["retries"] <= attempts / 1000  # <= 0.1 % of their packets
    fairness = get(f"{d.url}/status")["fairness"]
    assert fairness["throttled"] > 0 and fairness["top_throttled"][0]["id"] == "burst"

    # One analyzer stops for 3 s (SIGSTOP): it is found down, its outbox goes to the other.
    analyzers[0].signal(signal.SIGSTOP)
    wait_for(lambda: get(f"{d.url}/registry")[0]["health"] == "down", 10, "a1 down", 0.2)
    time.sleep(3)
    analyzers[0].signal(signal.SIGCONT)
    wait_for(lambda: get(f"{d.url}/registry")[0]["health"] == "up", 10, "a1 up", 0.2)

    # A limit set at runtime: 100 messages/s (10 of its packets) for the burst.
    said = ctl(procs, "limit", "burst", "100", "--url", d.url)
    assert said.startswith("burst: 100 messages/s, burst 100")
    assert "burst" in ctl(procs, "limits", "--url", d.url)
    sent_at_limit = get(f"{burst.url}/sent")["packets"]
    time.sleep(4)
    # Within its limit now: 4 s at 10 packets/s and a burst's worth, not thousands.
    assert get(f"{burst.url}/sent")["packets"] - sent_at_limit <= 4 * 10 + 10 + 10

    after = get(f"{steady.url}/metrics")
    attempts = after["sent_packets"] - before["sent_packets"]
    # With half the analyzers stopped for 3 s the queue fills: a few may be refused then.
    assert after["retries"] - before["retries"] <= attempts / 100

    # Stop sending; every packet an emitter had acknowledged reaches an analyzer.
    ctl(procs, "pause", "burst", "--url", d.url)
    sample = [f"steady-{i}" for i in range(0, 1000, 50)]
    for eid in sample:
        ctl(procs, "pause", eid, "--url", d.url)
    acknowledged = set(get(f"{burst.url}/sent?ids=1")["ids"])
    for eid in sample:
        acknowledged |= set(get(f"{steady.url}/e/{eid}/sent?ids=1")["ids"])
    assert steady.stop() == 0  # the rest drain what they hold, then exit
    wait_for(lambda: get(f"{d.url}/status")["queue"]["unacked"] == 0, 60, "all delivered", 0.5)
    arrived = delivered(outputs)
    assert acknowledged <= set(arrived)
    counters = get(f"{d.url}/status")["counters"]
    assert counters["dead_letters"] == 0
    assert counters["delivered_packets"] >= counters["received_packets"]
