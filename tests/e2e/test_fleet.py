"""Emitters by the thousand: leases, expiry, paged views. Real processes on 127.0.0.1."""

from __future__ import annotations

from tests.e2e.procs import Procs, get, wait_for


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
