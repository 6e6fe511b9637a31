"""Searchable stores with real daemons: three storing analyzers, one SIGKILLed mid-run and
restarted, search and histogram across the pool, the CLI's `logs search` and `tail logs
--since`."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.procs import LOGDIST, Proc, Procs, clean_env, free_port, get, wait_for

LEVELS = ["INFO", "WARN", "ERROR", "DEBUG"]
N = 3000  # packets of one message each, in requests of ten


def body(start: int) -> bytes:
    lines = []
    for i in range(start, start + 10):
        packet = {
            "packetId": f"pk{i:05d}",
            "emitter": f"e{i % 4}",
            "messages": [
                {
                    "ts": f"2026-12-02T10:{i // 600:02d}:{i // 10 % 60:02d}.{i % 10}00Z",
                    "level": LEVELS[i % 4],
                    "service": "shop",
                    "message": f"order tok{i:05d} shipped",
                }
            ],
        }
        lines.append(json.dumps(packet).encode())
    return b"\n".join(lines) + b"\n"


def send(url: str, start: int) -> None:
    req = urllib.request.Request(
        f"{url}/log-packets",
        data=body(start),
        headers={"Content-Type": "application/x-ndjson"},
        method="POST",
    )
    for _ in range(100):  # 503 while full: wait and send again, as an emitter does
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert resp.status == 202
                return
        except urllib.error.HTTPError as exc:
            assert exc.code == 503, exc.read()
            time.sleep(0.1)
    raise AssertionError("never accepted")


def search_all(url: str, **params: str) -> tuple[list[dict[str, Any]], list[Any]]:
    items: list[dict[str, Any]] = []
    partial: list[Any] = []
    cursor = None
    while True:
        query = {**params, "limit": "1000", **({"cursor": cursor} if cursor else {})}
        page = get(f"{url}/logs/search?{urllib.parse.urlencode(query)}")
        items += page["items"]
        partial += page["partial"]
        cursor = page["cursor"]
        if cursor is None:
            return items, partial


def storing_pipeline(procs: Procs, store: Path) -> Proc:
    """One analyzer keeping a store in `store`, and a distributor that knows it does."""
    a1 = procs.start("a1", "analyzer", "serve", "--id", "a1", "--port", "0", "--store", str(store))
    d = procs.start(
        "distributor", "distributor", "serve", "--port", "0", f"--analyzer=a1={a1.url}/ingest"
    )
    wait_for(lambda: get(f"{d.url}/registry")[0]["store"], 20, "a1 known to store")
    return d


def analyzer(procs: Procs, aid: str, port: int, store: Path) -> Any:
    return procs.start(
        aid, "analyzer", "serve", "--id", aid, "--port", str(port), "--store", str(store)
    )


def test_every_message_is_found_once_after_an_analyzer_is_killed_and_restarted(
    procs: Procs, tmp_path: Path
) -> None:
    ports = {aid: free_port() for aid in ("a1", "a2", "a3")}
    stores = {aid: tmp_path / "store" / aid for aid in ports}
    running = {aid: analyzer(procs, aid, port, stores[aid]) for aid, port in ports.items()}
    d = procs.start(
        "distributor",
        "distributor",
        "serve",
        "--port",
        "0",
        "--log-buffer",
        "20000",
        *(f"--analyzer={aid}=http://127.0.0.1:{port}/ingest" for aid, port in ports.items()),
    )
    wait_for(
        lambda: all(a["store"] and a["health"] == "up" for a in get(f"{d.url}/registry")),
        20,
        "three storing analyzers up",
    )

    # Send from four threads; a2 is SIGKILLed a third of the way and started again.
    starts = list(range(0, N, 10))
    done: list[int] = []

    def sender(mine: list[int]) -> None:
        for start in mine:
            send(d.url, start)
            done.append(start)

    threads = [threading.Thread(target=sender, args=(starts[k::4],)) for k in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: len(done) >= len(starts) // 3, 60, "a third sent")
    running["a2"].kill()
    time.sleep(0.5)
    running["a2"] = analyzer(procs, "a2", ports["a2"], stores["a2"])
    for t in threads:
        t.join(120)
    assert len(done) == len(starts)

    def all_found() -> bool:
        items, partial = search_all(d.url)
        return not partial and len(items) == N

    wait_for(all_found, 60, "every message stored", 0.5)
    items, _ = search_all(d.url)
    tokens = [i["message"].split()[1] for i in items]
    assert sorted(tokens) == [f"tok{i:05d}" for i in range(N)]  # each exactly once
    for k, level in enumerate(LEVELS):
        found, _ = search_all(d.url, level=level)
        assert len(found) == N // 4 and all(int(i["packetId"][2:]) % 4 == k for i in found)
    one = get(f"{d.url}/logs/search?q=tok01234")["items"]
    assert [(i["packetId"], i["level"], i["emitter"]) for i in one] == [("pk01234", "ERROR", "e2")]

    # a2 lost none of what it acknowledged: each packet the distributor saw it take (the
    # routed log records a forward once its 2xx came) is in a2's store after the restart.
    routed = get(f"{d.url}/logs?n=20000&analyzer=a2")
    acknowledged = {e["packetId"] for e in routed}
    assert acknowledged
    in_a2, _ = search_all(d.url, analyzer="a2")
    assert acknowledged <= {i["packetId"] for i in in_a2}

    # The histogram counts the rows the stores hold (a redelivered packet counts twice).
    held = sum(
        get(f"http://127.0.0.1:{port}/stats")["store"]["messages"] for port in ports.values()
    )
    hist = get(f"{d.url}/logs/histogram?buckets=10")
    assert hist["total"] == held >= N and hist["partial"] == []
    assert sum(sum(b["counts"].values()) for b in hist["buckets"]) == held

    # A dead analyzer is named, not skipped; the CLI says so and still prints what it found.
    running["a3"].kill()
    partial = get(f"{d.url}/logs/search?q=tok00001")["partial"]
    assert [p["analyzer"] for p in partial] == ["a3"] and "not reachable" in partial[0]["error"]
    cli = procs.run("logs", "search", "shipped", "--level", "ERROR", "-n", "5", "--url", d.url)
    assert cli.returncode == 0, cli.stderr
    assert "partial: a3 did not answer" in cli.stderr
    rows = [ln for ln in cli.stdout.splitlines() if "tok" in ln]
    assert len(rows) <= 5 and all("ERROR" in ln for ln in rows)
    sample = next(i for i in items if i["analyzer"] != "a3")
    token = sample["message"].split()[1]
    as_json = procs.run("logs", "search", token, "--json", "--url", d.url)
    assert [json.loads(ln)["packetId"] for ln in as_json.stdout.splitlines()] == [
        sample["packetId"]
    ]
    bad = procs.run("logs", "search", '"open', "--url", d.url)
    assert bad.returncode == 1 and "q: not a full-text query" in bad.stderr


def test_tail_since_prints_history_then_live_without_gap_or_repeat(
    procs: Procs, tmp_path: Path
) -> None:
    d = storing_pipeline(procs, tmp_path / "s1")
    emitter = procs.start(
        "e1", "emitter", "start", "--id", "e1", "--distributor", d.url, "--rate", "40"
    )
    wait_for(lambda: get(f"{d.url}/logs/histogram")["total"] >= 60, 20, "some history")
    tail = subprocess.Popen(
        [LOGDIST, "tail", "logs", "--since", "10m", "-f", "--json", "--url", d.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    try:
        time.sleep(2.0)
        emitter.stop()
        time.sleep(1.0)
    finally:
        tail.send_signal(signal.SIGINT)
        out, err = tail.communicate(timeout=10)
    printed = [json.loads(ln) for ln in out.splitlines()]
    keys = [(e["packetId"], e["index"]) for e in printed]
    assert len(keys) == len(set(keys)), "a message printed twice"
    items, _ = search_all(d.url)
    assert {(i["packetId"], i["index"]) for i in items} == set(keys), "a message missing"
    assert any("routed_at" in e for e in printed) and any("routed_at" not in e for e in printed)
