"""What an operator's world brings: a full disk, a closed terminal, a hostile web page, a
hostile emitter. Real processes on 127.0.0.1, stopped by PID."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import packets as support
from tests.support.procs import Procs, free_port, get, request, wait_for

PAD = "x" * 4000


def packet(pid: str) -> dict[str, object]:
    return support.packet(pid, [{"message": PAD}], emitter="disk-test")


def delivered_ids(output: Path) -> set[str]:
    if not output.exists():
        return set()
    return {json.loads(line)["packetId"] for line in output.read_bytes().splitlines()}


def test_a_full_disk_refuses_then_ingest_comes_back_by_itself_once_drained(
    procs: Procs, small_disk: Callable[[int], Path]
) -> None:
    disk = small_disk(3 << 20)
    a1_port = free_port()  # the analyzer is down at first: nothing listens here yet
    output = procs.workdir / "a1.ndjson"
    d = procs.start(
        "distributor",
        "distributor",
        "serve",
        "--port",
        "0",
        "--analyzer",
        f"a1=http://127.0.0.1:{a1_port}/ingest",
        "--spool-dir",
        str(disk / "spool"),
        "--health-interval",
        "0.2",
        "--rise",
        "1",
    )
    accepted: list[str] = []
    refusal: tuple[int, object] | None = None
    for i in range(3000):  # 3 MiB hold fewer than 800 of these
        status, body = request("POST", f"{d.url}/log-packet", packet(f"p{i}"))
        if status != 202:
            refusal = (status, body)
            break
        accepted.append(f"p{i}")
    assert refusal is not None, "a 3 MiB disk took 12 MB of packets"
    status, body = refusal
    assert status == 503 and body["code"] == "spool_failure", refusal  # type: ignore[index]
    assert "No space left on device" in body["error"]  # type: ignore[index]
    # Still full: refused again, nothing of it kept.
    assert request("POST", f"{d.url}/log-packet", packet("extra"))[0] == 503
    assert get(f"{d.url}/status")["spool"]["disk_full"] is True

    procs.start(
        "a1", "analyzer", "serve", "--id", "a1", "--port", str(a1_port), "--output", str(output)
    )
    wait_for(lambda: delivered_ids(output) >= set(accepted), 60, "the spool to drain", 0.2)
    # Back with no restart: the next 500 are accepted (a 503 is retried, as emitters do).
    later = [f"q{i}" for i in range(500)]
    refused = 0
    deadline = time.monotonic() + 90
    for pid in later:
        while True:
            status, body = request("POST", f"{d.url}/log-packet", packet(pid))
            if status == 202:
                break
            assert status == 503, (status, body)
            refused += 1
            assert time.monotonic() < deadline, f"still refused after 90 s ({refused} refusals)"
            time.sleep(0.05)
    wait_for(lambda: delivered_ids(output) >= set(later), 60, "the later packets", 0.2)
    # Nothing acknowledged was lost, and the distributor never restarted.
    assert delivered_ids(output) >= set(accepted) | set(later)
    assert d.running()
    assert get(f"{d.url}/status")["spool"]["disk_full"] is False
    # Said once each way, not once a refused request (the log may be on the same disk).
    out = d.output()
    assert out.count("event=spool_disk_full") == 1, out
    assert out.count("event=spool_disk_space_back") == 1
    assert "event=spool_write_failed" not in out


def test_a_registration_may_not_point_the_distributor_elsewhere(procs: Procs) -> None:
    d = procs.start(
        "distributor", "distributor", "serve", "--port", "0", "--emitter-networks", "10.0.0.0/8"
    )
    # A real emitter registers with its own loopback address: accepted, and controllable.
    e1 = procs.start("e1", "emitter", "start", "--id", "e1", "--distributor", d.url, "--rate", "1")
    wait_for(lambda: get(f"{d.url}/emitters"), 10, "e1 registered")
    assert request("POST", f"{d.url}/emitter/e1/pause")[0] == 200
    assert get(f"{e1.url}/metrics")["paused"] is True
    # An ingest client that names some other address to be called is refused, naming the rule.
    for url in ("http://169.254.169.254/latest/meta-data", "http://192.0.2.1:22", "http://db:5432"):
        status, body = request("POST", f"{d.url}/emitters/register", {"id": "evil", "url": url})
        assert status == 422, (url, status, body)
        assert "must point at the address its registration came from (127.0.0.1)" in body["error"]
        assert "--emitter-networks" in body["error"]
    # One into the operator's allow-list is accepted.
    status, body = request(
        "POST", f"{d.url}/emitters/register", {"id": "far", "url": "http://10.1.2.3:7001"}
    )
    assert status == 200, body
    assert sorted(e["id"] for e in get(f"{d.url}/emitters")) == ["e1", "far"]


def gone(pid: int) -> bool:
    """The process has exited (an unreaped zombie counts: it holds no port and runs nothing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def topology(tmp_path: Path) -> tuple[Path, str]:
    dport = free_port()
    a_ports = [free_port() for _ in range(2)]
    config = tmp_path / "topo.toml"
    config.write_text(
        f"[distributor]\nport = {dport}\n[distributor.health]\ninterval = 0.2\n"
        + "".join(
            f'[[analyzers]]\nid = "a{i}"\nport = {p}\nweight = 1\n' for i, p in enumerate(a_ports)
        )
        + '[[emitters]]\nid = "e1"\nrate = 100\n'
    )
    return config, f"http://127.0.0.1:{dport}"


def flowing(url: str) -> bool:
    try:
        rows = get(f"{url}/registry")
    except OSError:
        return False
    return len(rows) == 2 and all(r["delivered_messages"] > 0 for r in rows)


def daemon_pids(output: str) -> list[int]:
    return [int(p) for p in re.findall(r"event=listening .* pid=(\d+)", output)]


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGKILL])
def test_up_closed_or_killed_leaves_no_daemon_and_starts_again_on_its_ports(
    procs: Procs, tmp_path: Path, signum: int
) -> None:
    config, url = topology(tmp_path)
    up = procs.start("up", "up", str(config), listening=False)
    wait_for(lambda: flowing(url), 30, "traffic to both analyzers", 0.2)
    pids = daemon_pids(up.output())
    assert len(pids) == 4  # two analyzers, the distributor, the emitter
    up.signal(signum)  # the terminal closed / killed without a word
    code = up.popen.wait(30)
    assert code == (0 if signum == signal.SIGHUP else -signal.SIGKILL)
    wait_for(lambda: all(gone(pid) for pid in pids), 30, "every daemon to stop", 0.1)
    again = procs.start("up-again", "up", str(config), listening=False)
    wait_for(lambda: flowing(url), 30, "traffic after the restart", 0.2)
    assert "address already in use" not in again.output()
    assert again.stop() == 0
    assert "Traceback" not in up.output() + again.output()


def test_up_names_the_daemons_of_an_earlier_run_on_its_ports(procs: Procs, tmp_path: Path) -> None:
    config, url = topology(tmp_path)
    first = procs.start("up", "up", str(config), listening=False)
    wait_for(lambda: flowing(url), 30, "the first run", 0.2)
    pids = daemon_pids(first.output())
    second = procs.run("up", str(config), timeout=30)
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    line = lines[0]
    assert line.startswith("logdist up: daemons of an earlier run still hold its ports:")
    assert f"distributor :{url.rsplit(':', 1)[1]} (pid " in line
    assert "logdist distributor serve" in line and "logdist analyzer serve" in line
    assert all(str(pid) in line for pid in pids[:3]), (pids, line)
    assert first.running()  # the second run touched nothing
    assert first.stop() == 0
