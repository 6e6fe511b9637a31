"""`logdist ctl`, `tail logs` and `top` against real daemons: effects seen, failures coded."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from logdist.distributor.storage.state import StateStore
from tests.support.pipeline import Pipeline, elapsed
from tests.support.procs import LOGDIST, Procs, clean_env, free_port, get, wait_for

pytestmark = pytest.mark.e2e


def running_pipeline(procs: Procs) -> Pipeline:
    p = Pipeline(procs, {"a1": 0.5, "a2": 0.5})
    p.start({"e1": "1-3"}, 50)
    wait_for(lambda: get(f"{p.url}/emitters"), 10, "e1 registered")
    return p


@pytest.fixture
def pipeline(procs: Procs) -> Pipeline:
    """A pipeline of its own, for a test that changes it."""
    return running_pipeline(procs)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """One pipeline for the tests that only read from it or are refused."""
    owner = Procs(tmp_path_factory.mktemp("shared"))
    try:
        yield running_pipeline(owner)
    finally:
        owner.cleanup()


def ctl(
    p: Pipeline, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return p.procs.run("ctl", *args, "--url", p.url, env=env)


def ctl_json(p: Pipeline, *args: str) -> object:
    result = ctl(p, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def analyzer_row(p: Pipeline, aid: str) -> dict[str, object]:
    return next(a for a in p.registry() if a["id"] == aid)


def test_every_ctl_command_changes_the_running_system(pipeline: Pipeline) -> None:
    p = pipeline
    status = ctl_json(p, "status")
    assert isinstance(status, dict)
    assert [a["health"] for a in status["analyzers"]] == ["up", "up"]
    assert [e["id"] for e in status["emitters"]] == ["e1"]
    table = ctl(p, "status")
    assert table.returncode == 0 and "a1" in table.stdout and "e1" in table.stdout

    # disable: a2 gets nothing new while a1 keeps receiving; enable: it receives again.
    result = ctl(p, "disable", "a2")
    assert (result.returncode, result.stdout.strip()) == (0, "a2: disabled (health up)")
    wait_for(lambda: analyzer_row(p, "a2")["pending"] == 0, 5, "a2 settled")
    a2_before = p.stats("a2")["messages"]
    p.wait_messages(("a1",), p.stats("a1")["messages"] + 100)
    assert p.stats("a2")["messages"] == a2_before
    assert ctl(p, "enable", "a2").returncode == 0
    wait_for(lambda: p.stats("a2")["messages"] > a2_before, 5, "a2 receiving again")

    # drain: state draining, nothing new, reported drained once settled.
    assert ctl(p, "drain", "a2").returncode == 0
    wait_for(lambda: analyzer_row(p, "a2")["drained"], 5, "a2 drained")
    assert ctl(p, "enable", "a2").returncode == 0

    # weight: the target share moves at once.
    row = ctl_json(p, "weight", "a1", "3")
    assert isinstance(row, dict) and row["weight"] == 3
    assert row["target_share"] == pytest.approx(3 / 3.5)  # a2 keeps 0.5

    # pause / resume / rate on the emitter, relayed through the distributor.
    assert ctl(p, "pause", "e1").stdout.strip() == "e1: paused"
    metrics = get(f"{p.url}/emitter/e1/metrics")
    assert metrics["paused"] is True
    sent = metrics["sent_packets"]
    time.sleep(0.5)  # a paused emitter sends nothing, however long we look
    assert get(f"{p.url}/emitter/e1/metrics")["sent_packets"] == sent
    assert ctl(p, "resume", "e1").returncode == 0
    wait_for(
        lambda: get(f"{p.url}/emitter/e1/metrics")["sent_packets"] > sent, 5, "e1 sending again"
    )
    assert ctl(p, "rate", "e1", "7.5").stdout.strip() == "e1: rate 7.5/s"
    assert get(f"{p.url}/emitter/e1/metrics")["rps"] == 7.5


def test_runtime_add_takes_its_share_within_2s_and_remove_drains(pipeline: Pipeline) -> None:
    p = pipeline
    ctl(p, "rate", "e1", "200")
    late = p.start_analyzer("a3")  # started after the distributor, as an operator would
    started = time.monotonic()
    result = ctl(p, "add", "a3", f"{late.url}/ingest", "--weight", "1")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: p.stats("a3")["messages"] > 0, 5, "a3 to receive")
    took = elapsed(started)
    print(f"a3 received its first packet {took:.2f}s after ctl add")
    assert took <= 2.0
    removed = ctl_json(p, "remove", "a3")
    assert removed == {"removed": "a3", "drained": True}
    assert [a["id"] for a in p.registry()] == ["a1", "a2"]
    count = p.stats("a3")["messages"]
    p.wait_messages(("a1", "a2"), sum(p.messages("a1", "a2").values()) + 200)
    assert p.stats("a3")["messages"] == count


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("enable", "zz"), 1, "no analyzer 'zz' (HTTP 404)"),
        (("weight", "a1", "0"), 1, "weight must be a finite number > 0"),
        (("add", "a1", "http://127.0.0.1:1/ingest"), 1, "already exists"),
        (("add", "a9", "not-a-url"), 1, "http"),
        (("pause", "nobody"), 1, "no emitter 'nobody' has registered"),
        (("rate", "e1", "2e6"), 1, "rps must be between 0"),
        (("rate", "e1", "fast"), 2, ""),
        (("weight", "a1"), 2, ""),
        (("frobnicate",), 2, ""),
    ],
)
def test_ctl_failures_exit_with_their_code_and_say_why(
    shared: Pipeline, args: tuple[str, ...], code: int, message: str
) -> None:
    result = ctl(shared, *args)
    assert result.returncode == code, result
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_ctl_exits_3_when_the_distributor_cannot_be_reached(procs: Procs) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (("status",), ("disable", "a1"), ("pause", "e1")):
        result = procs.run("ctl", *args, "--url", url)
        assert result.returncode == 3
        assert result.stderr.startswith(f"logdist: cannot reach the distributor at {url}")
    result = procs.run("tail", "logs", "--url", url)
    assert result.returncode == 3


def test_ctl_uses_the_token_and_url_from_the_environment(procs: Procs) -> None:
    p = Pipeline(procs, {"a1": 1}, token="s3cret")
    p.start({}, 1, "--admin-token", "s3cret")
    env = {"LOGDIST_URL": p.url}
    refused = procs.run("ctl", "status", env=env)
    assert refused.returncode == 1 and "admin token" in refused.stderr
    ok = procs.run("ctl", "status", "--json", env={**env, "LOGDIST_TOKEN": "s3cret"})
    assert ok.returncode == 0 and json.loads(ok.stdout)["analyzers"][0]["id"] == "a1"


def test_tail_logs_backlog_filters_json_and_follow(shared: Pipeline) -> None:
    p = shared
    p.wait_messages(("a1", "a2"), 200)
    result = p.procs.run("tail", "logs", "-n", "5", "--url", p.url)
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and len(lines) == 5
    assert all("← e1" in line for line in lines)
    result = p.procs.run("tail", "logs", "-n", "50", "--json", "--analyzer", "a1", "--url", p.url)
    entries = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(entries) == 50
    assert {e["analyzer"] for e in entries} == {"a1"}
    assert {"packetId", "emitter", "level", "message", "ts", "routed_at"} <= set(entries[0])
    result = p.procs.run("tail", "logs", "-n", "30", "--json", "--level", "info", "--url", p.url)
    assert {json.loads(line)["level"] for line in result.stdout.splitlines()} == {"INFO"}

    with subprocess.Popen(
        [LOGDIST, "tail", "logs", "-n", "0", "--follow", "--json", "--url", p.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=clean_env(),
        # Ctrl-C as at a terminal: a suite started in the background (`cmd &` in a script)
        # passes SIGINT down ignored, and Python then never raises KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as follow:
        try:
            assert follow.stdout is not None
            fresh = [json.loads(follow.stdout.readline()) for _ in range(3)]
            assert all(e["routed_at"] > time.time() - 30 for e in fresh)
        finally:
            follow.send_signal(signal.SIGINT)
            assert follow.wait(10) == 130


def test_tail_in_a_closed_pipe_exits_quietly(shared: Pipeline) -> None:
    p = shared
    p.wait_messages(("a1", "a2"), 100)
    tail = f"{LOGDIST} tail logs -n 200 --follow --url {p.url}"
    script = f'{tail} | head -3; echo "status=${{PIPESTATUS[0]}}"'
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=30, env=clean_env()
    )
    assert result.stdout.splitlines()[-1] == "status=0"
    assert len(result.stdout.splitlines()) == 4
    assert result.stderr == ""


def test_top_prints_a_frame_and_quits_on_q(shared: Pipeline) -> None:
    p = shared
    result = p.procs.run("top", "--once", "--interval", "0.5", "--url", p.url)
    assert result.returncode == 0
    assert "a1" in result.stdout and "a2" in result.stdout and "msg/s" in result.stdout
    assert p.procs.run("top", "--once", "--url", f"http://127.0.0.1:{free_port()}").returncode == 3

    master, slave = pty.openpty()
    top = subprocess.Popen(
        [LOGDIST, "top", "--url", p.url, "--interval", "0.2"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**clean_env(), "TERM": "xterm", "COLUMNS": "120"},
    )
    os.close(slave)
    screen = b""
    try:
        deadline = time.monotonic() + 15
        while b"a2" not in screen and time.monotonic() < deadline:
            screen += os.read(master, 65536)
        assert b"a2" in screen and b"msg/s" in screen
        os.write(master, b"q")
        assert top.wait(10) == 0
    finally:
        if top.poll() is None:
            top.kill()
        os.close(master)


def test_shell_completion_offers_commands_and_live_ids(shared: Pipeline) -> None:
    def complete(words: str) -> list[str]:
        env = {
            **clean_env(),
            "_LOGDIST_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
            "LOGDIST_URL": shared.url,
        }
        out = subprocess.run([LOGDIST], capture_output=True, text=True, env=env, timeout=20).stdout
        return out.split()

    assert {"disable", "drain"} <= set(complete("logdist ctl d"))
    assert complete("logdist ctl disable a") == ["a1", "a2"]
    assert complete("logdist ctl pause ") == ["e1"]


def test_state_dir_restores_runtime_changes_after_a_restart(procs: Procs, tmp_path: Path) -> None:
    state = tmp_path / "state"
    p = Pipeline(procs, {"a1": 1, "a2": 1})
    p.start({}, 1, "--state-dir", str(state))
    extra = p.start_analyzer("a3")
    for args in (
        ("add", "a3", f"{extra.url}/ingest", "--weight", "2"),
        ("weight", "a1", "5"),
        ("disable", "a2"),
        ("remove", "a3"),
        ("add", "a4", f"{extra.url}/ingest"),
    ):
        assert ctl(p, *args).returncode == 0, args
    before = [(a["id"], a["url"], a["weight"], a["state"]) for a in p.registry()]
    saved = StateStore(state).load()
    assert saved is not None and [ref.id for ref, _ in saved] == ["a1", "a2", "a4"]
    assert p.distributor is not None
    argv = p.distributor.argv[1:]
    assert p.distributor.stop() == 0
    restarted = procs.start("distributor-again", *argv)
    rows = get(f"{restarted.url}/registry")
    assert [(a["id"], a["url"], a["weight"], a["state"]) for a in rows] == before
    assert "event=state_restored" in restarted.output()


def test_status_shows_what_the_distributor_received_from_each_emitter(shared: Pipeline) -> None:
    """The emitter sends 50 packets/s and, holding its lease by sending, reports its own
    counters only on registering: the table's count is the distributor's, and it grows."""

    def received() -> int:
        out = ctl(shared, "status").stdout
        row = next(line for line in out.splitlines() if line.split()[:1] == ["e1"])
        return int(row.split()[3])  # id, rate, buffer, received

    first = received()
    wait_for(lambda: received() > first + 20, 10, "e1's received count growing", 0.2)
    assert "received" in ctl(shared, "status").stdout


def test_a_client_token_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer

    from logdist.cli.client_options import client_token

    path = tmp_path / "token"
    path.write_text("from-file\n")
    assert client_token(f"@{path}") == "from-file"
    assert client_token("plain") == "plain"
    monkeypatch.setenv("LOGDIST_TOKEN_FILE", str(path))
    assert client_token(None) == "from-file"
    with pytest.raises(typer.Exit) as exit_:
        client_token(f"@{tmp_path / 'missing'}")
    assert exit_.value.exit_code == 2
