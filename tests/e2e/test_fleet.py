"""Emitters by the thousand: leases, expiry, paged views. Real processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.procs import Procs, get, wait_for


def test_a_stopped_emitter_is_shown_gone_then_forgotten(procs: Procs) -> None:
    d = procs.start(
        "distributor",
        "distributor",
        "serve",
        "--port",
        "0",
        "--emitter-lease",
        "3",
        "--emitter-forget",
        "2",
    )
    e1 = procs.start("e1", "emitter", "start", "--id", "e1", "--distributor", d.url, "--rate", "5")
    procs.start("e2", "emitter", "start", "--id", "e2", "--distributor", d.url, "--rate", "0")

    def states() -> dict[str, str]:
        page = get(f"{d.url}/emitters?limit=10")
        return {e["id"]: e["state"] for e in page["emitters"]}

    wait_for(lambda: states() == {"e1": "active", "e2": "active"}, 15, "both registered")
    e1.kill()  # by PID, without a word
    wait_for(lambda: states().get("e1") == "gone", 10, "e1 shown as gone", 0.2)
    assert states()["e2"] == "active"  # renewing (it sends nothing: rate 0)
    gone = procs.run("ctl", "emitters", "--state", "gone", "--url", d.url)
    assert gone.returncode == 0 and "e1" in gone.stdout and "e2" not in gone.stdout
    wait_for(lambda: "e1" not in states(), 15, "e1 forgotten", 0.2)
    summary = get(f"{d.url}/status")["emitter_summary"]
    assert (summary["total"], summary["active"], summary["forgotten"]) == (1, 1, 1)
    assert "event=emitters_forgotten count=1 ids=e1" in d.output()
    status = procs.run("ctl", "pause", "e1", "--url", d.url)
    assert status.returncode == 1 and "no emitter 'e1' has registered" in status.stderr


def test_fleets_register_send_and_are_controlled_one_emitter_at_a_time(
    procs: Procs, tmp_path: Path
) -> None:
    output = tmp_path / "a1.ndjson"
    a1 = procs.start(
        "a1", "analyzer", "serve", "--id", "a1", "--port", "0", "--output", str(output)
    )
    d = procs.start(
        "distributor",
        "distributor",
        "serve",
        "--port",
        "0",
        "--analyzer",
        f"a1={a1.url}/ingest",
        "--emitter-lease",
        "3",
        "--emitter-forget",
        "3",
    )
    fleets = procs.fleets(1000, 1, d.url, "red", "blue")
    wait_for(
        lambda: get(f"{d.url}/status")["emitter_summary"]["active"] == 2000,
        30,
        "2,000 emitters registered",
        0.2,
    )
    page = get(f"{d.url}/emitters?q=red-99&limit=20")
    assert [e["id"] for e in page["emitters"]] == ["red-99"] + [f"red-99{i}" for i in range(10)]
    assert page["emitters"][0]["url"] == f"{fleets['red'].url}/e/red-99"
    wait_for(lambda: member(d.url, "blue-7")["received_packets"] >= 2, 10, "blue-7 sending")

    # Each one is reached by id through the distributor.
    assert run_ok(procs, "ctl", "pause", "red-5", "--url", d.url) == "red-5: paused"
    sent = get(f"{fleets['red'].url}/e/red-5/sent")["packets"]
    assert member(d.url, "red-5")["state"] == "paused"
    assert run_ok(procs, "ctl", "rate", "red-6", "5", "--url", d.url) == "red-6: rate 5/s"
    wait_for(lambda: member(d.url, "red-6")["received_packets"] >= 12, 10, "red-6 at 5/s")
    assert get(f"{fleets['red'].url}/e/red-5/sent")["packets"] == sent  # still paused
    assert get(f"{fleets['red'].url}/e/red-4/metrics")["paused"] is False  # its neighbour
    run_ok(procs, "ctl", "resume", "red-5", "--url", d.url)
    wait_for(
        lambda: get(f"{fleets['red'].url}/e/red-5/sent")["packets"] > sent, 10, "red-5 resumed"
    )

    # Nothing a member had acknowledged is missing at the analyzer.
    acknowledged = set()
    for eid in ("red-5", "red-6", "blue-7", "blue-999"):
        acknowledged |= set(get(f"{fleets[eid.split('-')[0]].url}/e/{eid}/sent?ids=1")["ids"])
    wait_for(lambda: acknowledged <= delivered(output), 10, "acknowledged packets delivered")

    # A fleet that stops is shown gone, then forgotten; the other keeps its leases.
    fleets["red"].kill()
    wait_for(lambda: get(f"{d.url}/status")["emitter_summary"]["gone"] == 1000, 15, "red gone", 0.2)
    wait_for(
        lambda: get(f"{d.url}/status")["emitter_summary"]["total"] == 1000,
        20,
        "red forgotten",
        0.2,
    )
    summary = get(f"{d.url}/status")["emitter_summary"]
    assert (summary["active"], summary["forgotten"]) == (1000, 1000)
    logged = re.findall(r"event=emitters_forgotten count=(\d+) ids=red-", d.output())
    assert sum(map(int, logged)) == 1000  # one line a sweep, not one an emitter


def member(url: str, eid: str) -> dict[str, Any]:
    page = get(f"{url}/emitters?q={eid}&limit=1")
    row: dict[str, Any] = page["emitters"][0]
    assert row["id"] == eid
    return row


def run_ok(procs: Procs, *args: str) -> str:
    done = procs.run(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def delivered(output: Path) -> set[str]:
    if not output.exists():
        return set()
    return {json.loads(line)["packetId"] for line in output.read_bytes().splitlines() if line}


def test_ten_thousand_analyzers_added_at_runtime_are_probed_within_budget_and_paged(
    procs: Procs,
) -> None:
    live = [procs.start(f"live{i}", "analyzer", "serve", "--port", "0") for i in range(4)]
    d = procs.start("distributor", "distributor", "serve", "--port", "0")  # default health

    async def add_all() -> None:
        async with aiohttp.ClientSession() as session:
            slots = asyncio.Semaphore(32)

            async def one(i: int) -> None:
                body = {"id": f"a{i:05d}", "url": f"{live[i % 4].url}/ingest", "weight": 1}
                async with slots, session.post(f"{d.url}/registry/add", json=body) as resp:
                    assert resp.status == 201, await resp.text()

            await asyncio.gather(*(one(i) for i in range(10_000)))

    asyncio.run(add_all())
    wait_for(
        lambda: get(f"{d.url}/status")["analyzer_summary"]["health"]["up"] >= 50, 30, "some up"
    )
    raw = urllib.request.urlopen(f"{d.url}/status", timeout=5).read()
    status = json.loads(raw)
    assert len(raw) <= 16 * 1024, len(raw)
    health = status["health"]
    assert health["probed"] == 10_000 and health["max_probes"] == 50
    assert health["cycle"] == 200.0 and health["stretched"] is True
    assert status["analyzer_summary"]["total"] == 10_000 and len(status["analyzers"]) <= 16
    assert "event=health_budget" in d.output() and "stretched=True" in d.output()
    page = get(f"{d.url}/registry?q=a0999&limit=3")
    assert [a["id"] for a in page["analyzers"]] == ["a09990", "a09991", "a09992"]
    listed = procs.run("ctl", "analyzers", "--q", "a0999", "--limit", "3", "--url", d.url)
    assert listed.returncode == 0 and "3 shown of 10,000" in listed.stdout
    assert "more: logdist ctl analyzers --cursor" in listed.stdout
    bare = urllib.request.urlopen(f"{d.url}/registry", timeout=10)
    assert bare.headers["X-Total-Count"] == "10000" and 'rel="next"' in bare.headers["Link"]
    assert len(json.loads(bare.read())) == 1000
