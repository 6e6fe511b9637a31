"""The CLI as a user meets it: help, errors as one line with the right exit code, clean stops."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.procs import LOGDIST, Procs, free_port, get, wait_for

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((), ["analyzer", "distributor", "emitter", "up"]),
        (
            ("distributor", "serve"),
            ["--analyzer", "--config", "--queue-capacity", "--health-interval"],
        ),
        (("analyzer", "serve"), ["--id", "--port", "--output"]),
        (("emitter", "start"), ["--rate", "--messages", "--distributor"]),
    ],
)
def test_help_explains_each_command(procs: Procs, args: tuple[str, ...], words: list[str]) -> None:
    result = procs.run(*args, "--help")
    assert result.returncode == 0
    for word in words:
        assert word in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("analyzer", "serve", "--port", "70000"), "port must be a port number"),
        (("analyzer", "serve", "--id", "no spaces"), "analyzer id"),
        (("emitter", "start", "--messages", "9-2"), "messages must satisfy"),
        (("emitter", "start", "--distributor", "localhost:8000"), "http"),
        (("emitter", "start", "--rate", "-1"), "rate must be >= 0"),
        (("distributor", "serve", "--analyzer", "a1"), "ID=URL"),
        (("distributor", "serve", "--analyzer", "a1=http://h:1/x@0"), "weight must be > 0"),
        (("distributor", "serve", "--queue-capacity", "0"), "queue_capacity must be >= 1"),
        (("distributor", "serve", "--config", "missing.toml"), "missing.toml: no such file"),
        (("distributor", "serve", "--syslog-tcp", "70000"), "syslog tcp must be a port number"),
        (("distributor", "serve", "--syslog-max-message-bytes", "10"), "must be >= 480, got 10"),
        (("distributor", "serve", "--parse-workers", "99"), "parse_workers must be 0-64"),
        (("distributor", "serve", "--search-timeout", "0"), "search_timeout must be > 0"),
        (("analyzer", "serve", "--store", "s", "--store-sync", "off"), "store_sync must be"),
        (("analyzer", "serve", "--store", "s", "--store-max-age", "soon"), "store-max-age must"),
        (("analyzer", "serve", "--store", "s", "--store-max-bytes", "5"), "at least 1 MiB"),
    ],
)
def test_bad_values_are_one_line_and_exit_2(
    procs: Procs, args: tuple[str, ...], message: str
) -> None:
    result = procs.run(*args)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("logdist: ") and message in lines[0], (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_malformed_toml_is_one_line_and_exit_2(procs: Procs, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[distributor\nport = 1\n")
    result = procs.run("distributor", "serve", "--config", str(bad))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "not valid TOML" in result.stderr


def test_port_in_use_is_one_line_and_exit_1(procs: Procs) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = procs.run("analyzer", "serve", "--port", str(port))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_syslog_port_in_use_is_one_line_and_exit_1(procs: Procs) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = procs.run("distributor", "serve", "--port", "0", "--syslog-tcp", str(port))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"logdist: distributor: cannot listen for syslog on tcp 127.0.0.1:{port}:"
        " address already in use"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("analyzer", "serve", "--port", "0"),
        ("distributor", "serve", "--port", "0"),
        ("emitter", "start", "--port", "0", "--distributor", "http://127.0.0.1:9", "--rate", "0"),
    ],
)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_every_daemon_stops_cleanly_on_a_signal(
    procs: Procs, args: tuple[str, ...], signum: int
) -> None:
    proc = procs.start(args[0], *args)
    proc.signal(signum)
    assert proc.popen.wait(20) == 0
    out = proc.output()
    assert "event=stopped" in out and "Traceback" not in out


def test_up_runs_the_topology_and_sigterm_leaves_no_child(procs: Procs, tmp_path: Path) -> None:
    dport = free_port()
    ports = [free_port() for _ in range(3)]
    config = tmp_path / "topo.toml"
    config.write_text(
        f"[distributor]\nport = {dport}\n[distributor.health]\ninterval = 0.2\n"
        + "".join(
            f'[[analyzers]]\nid = "a{i}"\nport = {p}\nweight = {w}\n'
            for i, (p, w) in enumerate(zip(ports, (5, 3, 2), strict=True))
        )
        + '[[emitters]]\nid = "e1"\nrate = 200\nmessages = "1-5"\n'
    )
    up = procs.start("up", "up", str(config), listening=False)
    url = f"http://127.0.0.1:{dport}"

    def all_three_receive() -> bool:
        try:
            rows = get(f"{url}/registry")
        except OSError:
            return False
        return all(r["delivered_messages"] > 0 for r in rows) and len(rows) == 3

    wait_for(all_three_receive, 30, "traffic to all three analyzers", 0.2)
    pids = [int(p) for p in re.findall(r"event=listening .* pid=(\d+)", up.output())]
    assert len(pids) == 5  # 3 analyzers, the distributor, the emitter
    assert "logdist is up" in up.output()
    assert up.stop() == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert "Traceback" not in up.output()


def test_logdist_is_the_installed_console_script() -> None:
    out = subprocess.run([LOGDIST, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("logdist ")


def test_up_gives_every_child_flags_its_command_knows(procs: Procs) -> None:
    import dataclasses

    from logdist.config import AnalyzerConfig, EmitterConfig
    from logdist.config.fields import options
    from logdist.config.tables import ClientConfig, TlsConfig
    from logdist.local.supervisor import analyzer_argv, emitter_argv

    # Every setting of a topology's analyzers and emitters reaches the child as a flag...
    analyzer = AnalyzerConfig(
        output="x",
        fail_rate=0.1,
        delay=0.1,
        store="s",
        store_max_bytes=1 << 20,
        store_max_age=60,
        allowed_hosts=("logs.example",),
        tls=TlsConfig("a.pem", "a.key", "clients.pem"),
    )
    secret = procs.workdir / "token"
    secret.write_text("t0k3n-from-a-file\n")
    emitter = EmitterConfig(
        allowed_hosts=("logs.example",),
        token_file=str(secret),
        control_token_file=str(secret),
        tls=TlsConfig("e.pem", "e.key", "clients.pem"),
        client=ClientConfig("ca.pem", "me.pem", "me.key", insecure=True),
        track_ids=500,
    )
    cases: list[tuple[object, list[str], set[str]]] = [
        (analyzer, analyzer_argv(analyzer), {"weight"}),  # the weight is the distributor's
        # Tokens come from the environment or a file, never a command line.
        (emitter, emitter_argv(emitter), {"token", "control_token"}),
    ]
    for cfg, argv, skip in cases:
        flags = {a for a in argv if a.startswith("--")}
        fields = {f.name for f in dataclasses.fields(cfg)} - skip  # type: ignore[arg-type]
        named = {o.decls[0] for o in options(type(cfg)) if o.path[0] in fields}
        assert flags == named
        assert {o.path[0] for o in options(type(cfg))} >= fields
        # ...and the command knows each one.
        help_text = procs.run(*argv[3:5], "--help", env={"COLUMNS": "200"}).stdout
        assert all(flag in help_text for flag in flags), flags


def test_logs_search_and_tail_since_say_what_is_wrong(procs: Procs) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    unreachable = procs.run("logs", "search", "disk", "--url", nobody)
    assert unreachable.returncode == 3 and "cannot reach the distributor" in unreachable.stderr
    bad = procs.run("tail", "logs", "--since", "soon", "--url", nobody)
    assert bad.returncode == 2 and "--since" in bad.stderr and "Traceback" not in bad.stderr
    few = procs.run("logs", "search", "-n", "0", "--url", nobody)
    assert few.returncode == 2 and "must be >= 1" in few.stderr


def test_up_checks_its_store_retention_before_starting(procs: Procs, tmp_path: Path) -> None:
    config = tmp_path / "one.toml"
    config.write_text(f'[[analyzers]]\nid = "a1"\nport = {free_port()}\n')
    result = procs.run("up", str(config), "--store-max-bytes", "5")
    assert result.returncode == 2 and "at least 1 MiB" in result.stderr
    assert "Traceback" not in result.stderr


def test_up_runs_a_cluster_and_a_change_through_one_replica_reaches_the_others(
    procs: Procs, tmp_path: Path
) -> None:
    """configs/cluster.toml on free ports: three nats-servers, three replicas, analyzers and
    emitters; SIGTERM stops every one of them, the NATS servers too."""
    from logdist.local.ports import free_run

    text = (Path(__file__).parents[2] / "configs" / "cluster.toml").read_text()
    first = free_run(12)  # one run for every fixed port: runs picked apart may overlap
    ports = {
        "port = 8000": f"port = {first}",
        "nats_port = 4222": f"nats_port = {first + 3}",
        "routes_port = 6222": f"routes_port = {first + 6}",
        **{f"port = 900{i}": f"port = {first + 8 + i}" for i in (1, 2, 3)},
    }
    for old, new in ports.items():
        assert old in text
        text = text.replace(old, new)
    config = tmp_path / "cluster.toml"
    config.write_text(text)
    up = procs.start("up", "up", str(config), listening=False)
    first = int(ports["port = 8000"].split()[-1])
    urls = [f"http://127.0.0.1:{first + k}" for k in range(3)]

    def every_replica_routes() -> bool:
        try:
            return all(get(f"{u}/status")["cluster"]["acked"] > 0 for u in urls)
        except OSError:
            return False

    wait_for(every_replica_routes, 60, "each replica routing from the shared stream", 0.3)
    changed = procs.run("ctl", "weight", "a3", "2", "--url", urls[1])
    assert changed.returncode == 0, changed.stderr
    wait_for(
        lambda: {a["id"]: a["weight"] for a in get(f"{urls[0]}/registry")}["a3"] == 2,
        10,
        "d1 to apply the weight d2 took",
    )
    status = get(f"{urls[2]}/status")["cluster"]
    assert [r["id"] for r in status["replicas"]] == ["d1", "d2", "d3"]
    assert "logdist is up: distributor replicas" in up.output()
    nats_conf = str(tmp_path / ".logdist" / "nats")
    assert _cmdlines_with(nats_conf), "the NATS servers run under .logdist/nats"
    assert up.stop(timeout=60) == 0
    assert not _cmdlines_with(nats_conf) and not _cmdlines_with(str(config))
    assert "Traceback" not in up.output()


def _cmdlines_with(text: str) -> list[int]:
    """Pids of processes whose command line mentions `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(int(entry.name))
    return found
