"""The operator scripts in scripts/, run against a live pipeline."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.pipeline import Pipeline
from tests.support.procs import Procs, clean_env, get, wait_for

pytestmark = pytest.mark.e2e

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPTS / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean_env(), "LOG_DIR": str(cwd / "logs")},
    )


def test_rolling_restart_replaces_every_analyzer_and_loses_nothing(procs: Procs) -> None:
    p = Pipeline(procs, {"a1": 0.5, "a2": 0.5})
    p.start({"e1": "1-5", "e2": "1-5"}, 80)
    p.wait_messages(("a1", "a2"), 500)
    pids = {aid: get(f"{proc.url}/health")["pid"] for aid, proc in p.analyzers.items()}
    targets = [f"{aid}={proc.port}" for aid, proc in p.analyzers.items()]
    output = str(procs.workdir / "{id}.ndjson")
    result = run(
        "rolling-restart", "--url", p.url, *targets, "--", "--output", output, cwd=procs.workdir
    )
    assert result.returncode == 0, result.stderr
    assert "a1: enabled and up" in result.stdout and "a2: enabled and up" in result.stdout
    new_pids = {aid: get(f"{proc.url}/health")["pid"] for aid, proc in p.analyzers.items()}
    try:
        assert all(new_pids[aid] != pids[aid] for aid in pids)
        rows = p.registry()
        assert [(a["state"], a["health"]) for a in rows] == [("enabled", "up")] * 2
        p.wait_messages(("a1", "a2"), sum(p.messages().values()) + 200)
        p.quiesce()
        accounting = p.accounting()
        print(accounting)
        assert accounting["lost"] == 0 and accounting["sent"] > 200
        assert accounting["torn_lines"] == 0  # nothing was killed
    finally:
        for pid in new_pids.values():  # the script started them, not this test: stop them by PID
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def test_rate_ramp_sets_each_step_and_reports_throughput(procs: Procs) -> None:
    p = Pipeline(procs, {"a1": 1})
    p.start({"e1": "1", "e2": "1"}, 5)
    wait_for(lambda: len(get(f"{p.url}/emitters")) == 2, 10, "emitters registered")
    result = run("rate-ramp", "--url", p.url, "10", "30", "3", "1", cwd=procs.workdir)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["rate", "delivered", "msg/s"]
    assert [line.split()[0] for line in lines[1:]] == ["10.0", "20.0", "30.0"]
    assert all(float(line.split()[2]) > 0 for line in lines[1:])
    assert {e["metrics"]["rps"] for e in get(f"{p.url}/emitters")} == {30.0}
    bad = run("rate-ramp", "--url", p.url, "1", cwd=procs.workdir)
    assert bad.returncode == 2 and "usage" in bad.stderr
