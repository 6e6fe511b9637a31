"""Graceful drain: SIGTERM stops accepting, delivers what it can, keeps the rest in the spool."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.procs import Procs, get, post, wait_for

pytestmark = pytest.mark.e2e


def send(url: str, n: int, prefix: str) -> list[str]:
    ids = []
    for i in range(n):
        body = json.dumps({"packetId": f"{prefix}{i}", "messages": [{"m": i}]}).encode()
        req = urllib.request.Request(
            f"{url}/log-packet", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 202
        ids.append(f"{prefix}{i}")
    return ids


def test_sigterm_keeps_what_it_could_not_deliver_and_the_next_start_delivers_it(
    procs: Procs, tmp_path: Path
) -> None:
    out = tmp_path / "a1.ndjson"
    analyzer = procs.start("a1", "analyzer", "serve", "--port", "0", "--output", str(out))
    args = (
        "distributor",
        "serve",
        "--port",
        "0",
        "--analyzer",
        f"a1={analyzer.url}/ingest",
        "--spool-dir",
        str(tmp_path / "spool"),
        "--drain-timeout",
        "1",
        "--health-interval",
        "0.2",
    )
    first = procs.start("distributor", *args)
    wait_for(lambda: get(f"{first.url}/registry")[0]["health"] == "up", 10, "a1 up")
    post(f"{first.url}/analyzer/a1/disable")  # (not kept: no state dir) nothing can be delivered
    ids = send(first.url, 40, "k")
    started = time.monotonic()
    assert first.stop() == 0
    assert time.monotonic() - started < 5  # the drain timeout, not forever
    assert "kept_in_spool=40 lost=0" in first.output()
    second = procs.start("distributor-again", *args)
    assert "event=spool_recovered" in second.output() and "packets=40" in second.output()
    wait_for(
        lambda: out.exists() and len(out.read_bytes().splitlines()) == 40, 10, "replayed delivery"
    )
    assert sorted(json.loads(line)["packetId"] for line in out.read_bytes().splitlines()) == sorted(
        ids
    )


def test_a_second_signal_exits_at_once(procs: Procs, tmp_path: Path) -> None:
    d = procs.start(
        "distributor",
        "distributor",
        "serve",
        "--port",
        "0",
        "--drain-timeout",
        "60",
        "--analyzer",
        "a1=http://127.0.0.1:9/ingest",
        "--spool-dir",
        str(tmp_path / "spool"),
    )
    send(d.url, 5, "s")
    d.signal(signal.SIGTERM)
    wait_for(lambda: "event=stopping" in d.output(), 5, "first signal seen")
    started = time.monotonic()
    d.signal(signal.SIGTERM)
    assert d.popen.wait(10) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 3
    assert "event=forced_exit" in d.output()
