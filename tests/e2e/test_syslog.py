"""Syslog through the real CLI: Debian's rsyslog forwarding a file's lines with omfwd,
octet-counted, to `logdist distributor serve --syslog-tcp`; every line arrives once, by weight."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.pipeline import Pipeline
from tests.support.procs import Procs, get, wait_for

pytestmark = pytest.mark.e2e

WEIGHTS = {"a1": 0.5, "a2": 0.3, "a3": 0.2}
RSYSLOGD = "/usr/sbin/rsyslogd"  # Debian's rsyslog; scripts/test installs it
LISTENING = re.compile(r"event=syslog_listening host=\S+ tcp=(\d+) udp=(\d+)")

RSYSLOG_CONF = """\
global(workDirectory="{work}")
module(load="imfile")
input(type="imfile" File="{lines}" Tag="checkout" Facility="local3" Severity="warning")
action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp"
       TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format"
       action.resumeRetryCount="-1")
"""


def syslog_ports(p: Pipeline) -> tuple[int, int]:
    assert p.distributor is not None
    distributor = p.distributor
    match = wait_for(lambda: LISTENING.search(distributor.output()), 10, "syslog ports")
    return int(match.group(1)), int(match.group(2))


def test_rsyslog_forwards_every_line_once_by_weight(procs: Procs, artifacts: Path) -> None:
    p = Pipeline(procs, WEIGHTS)
    p.start({}, 0, "--syslog-tcp", "0", "--syslog-udp", "0")
    tcp, _ = syslog_ports(p)
    n = 60_000
    lines = procs.workdir / "checkout.log"
    lines.write_text("".join(f"order {i} paid\n" for i in range(n)))
    work = procs.workdir / "rsyslog"
    work.mkdir()
    conf = work / "rsyslog.conf"
    conf.write_text(RSYSLOG_CONF.format(work=work, lines=lines, port=tcp))
    rsyslog = procs.spawn(
        "rsyslog", [RSYSLOGD, "-n", "-f", str(conf), "-i", str(work / "rsyslogd.pid")], None
    )
    counts = p.wait_messages(tuple(WEIGHTS), n, timeout=120)
    assert rsyslog.running(), rsyslog.output()
    rsyslog.stop()

    # N lines in, N messages out: each once, with rsyslog's fields mapped.
    assert sum(counts.values()) == n
    seen: list[str] = []
    for aid in WEIGHTS:
        for line in p.output(aid).read_bytes().splitlines():
            packet = json.loads(line)
            assert packet["emitter"] == "syslog"
            for m in packet["messages"]:
                assert (m["service"], m["level"], m["facility"]) == ("checkout", "WARN", "local3")
                assert m["syslog"] == "rfc5424" and m["host"]
                seen.append(m["message"])
    assert sorted(seen) == sorted(f"order {i} paid" for i in range(n))
    shares = {aid: counts[aid] / n for aid in WEIGHTS}
    (artifacts / "syslog_rsyslog.json").write_text(json.dumps({"n": n, "shares": shares}))
    for aid, weight in WEIGHTS.items():
        assert abs(shares[aid] - weight) <= 0.01, shares
    inputs = get(f"{p.url}/status")["counters"]["inputs"]["syslog"]
    assert inputs["received_messages"] == n and inputs["rejected"] == {}


def test_parse_processes_do_not_outlive_a_killed_distributor(procs: Procs) -> None:
    proc = procs.start("distributor", "distributor", "serve", "--port", "0",
                       "--syslog-tcp", "0", "--parse-workers", "2")  # fmt: skip
    wait_for(lambda: "parse_processes=2" in proc.output(), 20, "two parse processes")
    pid = proc.popen.pid
    children = [
        int(c)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for c in (task / "children").read_text().split()
    ]
    assert len(children) >= 2  # the parse processes (and multiprocessing's resource tracker)
    proc.kill()
    wait_for(lambda: not any(Path(f"/proc/{c}").exists() for c in children), 10, "children gone")
