"""The front ends `logdist bench` compares, and the wrk load it puts through them.

Four logdist analyzers (weights 4:3:2:1) are the upstreams of three front ends in turn:
logdist's distributor, nginx and HAProxy, each a weighted proxy to the same analyzers. Load
is the same for each; delivered packets and messages are counted at the analyzers (what
actually arrived), not at the front end.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logdist.bench.scenarios import REGISTERED, WEIGHTS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PortTaken(RuntimeError):
    """The process meant to listen on a port exited before it did."""


def wait_port(
    port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise PortTaken(f"the process for 127.0.0.1:{port} exited") from None
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of `pids` and their children threads, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


# The ports of this run that speak TLS (scenario l), with the context that trusts them.
TLS_PORTS: dict[int, ssl.SSLContext] = {}


def base(port: int) -> str:
    """The base URL of a local port: https:// for one that speaks TLS."""
    return f"{'https' if port in TLS_PORTS else 'http'}://127.0.0.1:{port}"


def get_bytes(port: int, path: str, timeout: float = 5) -> bytes:
    """A local port's answer to GET `path`, as it came (https:// for a TLS port)."""
    with urllib.request.urlopen(base(port) + path, timeout=timeout,
                                context=TLS_PORTS.get(port)) as resp:  # fmt: skip
        body: bytes = resp.read()
        return body


def get_json(port: int, path: str, timeout: float = 5) -> Any:
    return json.loads(get_bytes(port, path, timeout))


def analyzer_stats(port: int) -> dict[str, Any]:
    stats: dict[str, Any] = get_json(port, "/stats")
    return stats


def stats_total(ports: dict[str, int]) -> dict[str, tuple[int, int]]:
    """Per analyzer: packets received (duplicates included) and messages."""
    out = {}
    for aid, port in ports.items():
        s = analyzer_stats(port)
        out[aid] = (int(s["packets"]) + int(s["duplicates"]), int(s["messages"]))
    return out


@dataclass
class FrontEnd:
    name: str
    port: int
    procs: list[subprocess.Popen[bytes]]
    # Several entry points (a cluster's replicas): the load is spread over all of them.
    ports: list[int] = field(default_factory=list)
    # Its processes by part ("replicas", "nats"), each part's CPU measured on its own.
    parts: dict[str, list[int]] = field(default_factory=dict)
    # Stopped group by group, in this order (a cluster: its replicas, then its servers).
    groups: list[list[subprocess.Popen[bytes]]] = field(default_factory=list)

    def pids(self) -> list[int]:
        pids = [p.pid for p in self.procs]
        for p in list(pids):  # nginx: the master's workers do the work
            try:
                children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
            except FileNotFoundError:
                children = []
            pids += [int(c) for c in children]
        return pids

    def stop(self) -> None:
        for group in self.groups or [self.procs]:
            stop(group)


def start_logdist(
    work: Path,
    ports: dict[str, int],
    *extra: str,
    analyzers: list[str] | None = None,
    fmt: str | None = None,
    healthy_within: float = 60.0,
    python: str = sys.executable,
    health_path: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> FrontEnd:
    """logdist's distributor (run by `python`: another install's, for a baseline);
    `analyzers` are --analyzer values (default: the four), each given `format = fmt` when
    one is named (and probed at `health_path` on its host when given); with `tls` (the
    context that trusts it) it serves TLS, as `extra` says. Returns once every analyzer is up
    (probed within the distributor's probe budget: allow `healthy_within` seconds)."""
    port = free_port()
    refs = analyzers or [f"{aid}={base(ports[aid])}/ingest@{w}" for aid, w in WEIGHTS.items()]
    config = work / "logdist-analyzers.toml"
    config.write_text(
        "\n".join(
            f'[[analyzers]]\nid = "{ref.split("=", 1)[0]}"\n'
            f'url = "{ref.split("=", 1)[1].rsplit("@", 1)[0]}"\n'
            f"weight = {ref.rsplit('@', 1)[1]}\n"
            + (f'format = "{fmt}"\n' if fmt else "")
            + (
                f'health_url = "{ref.split("=", 1)[1].split("/ingest")[0]}{health_path}"\n'
                if health_path
                else ""
            )
            for ref in refs
        )
    )
    for attempt in range(3):
        proc = subprocess.Popen(
            [
                python,
                "-m",
                "logdist",
                "distributor",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
                "--log-level",
                "WARNING",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(port, proc=proc)
            break
        except PortTaken:
            # The free port was taken meanwhile (another process's outgoing connection can
            # be given it, as NATS servers' routes are): another one.
            if attempt == 2:
                raise
            print(f"  (port {port} was taken before the distributor bound it: another)")
            port = free_port()
    if tls is not None:
        TLS_PORTS[port] = tls
    wait_healthy(port, len(refs), healthy_within)
    return FrontEnd("logdist", port, [proc])


def wait_healthy(port: int, count: int, timeout: float = 60.0) -> None:
    """Until the distributor has probed `count` analyzers up."""
    deadline = time.monotonic() + timeout
    up = 0
    while time.monotonic() < deadline:
        up = get_json(port, "/status", timeout=10)["analyzer_summary"]["health"]["up"]
        if up >= count:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the distributor on {port} saw {up} of {count} analyzers up")


def start_nginx(
    work: Path, ports: dict[str, int], tls: tuple[str, str, str, ssl.SSLContext] | None = None
) -> FrontEnd:
    """nginx, one worker, a weighted proxy to the analyzers; with `tls` (certificate, key,
    CA, the context trusting it) it terminates TLS and forwards over TLS, verifying."""
    port = free_port()
    listen, upstream, proxy_tls = f"127.0.0.1:{port} backlog=4096", "http", ""
    if tls is not None:
        cert, key, ca, ctx = tls
        listen += f" ssl;\n    ssl_certificate {cert};\n    ssl_certificate_key {key}"
        upstream = "https"
        proxy_tls = (
            f"proxy_ssl_verify on;\n      proxy_ssl_trusted_certificate {ca};\n"
            "      proxy_ssl_name localhost;\n      proxy_ssl_session_reuse on;"
        )
        TLS_PORTS[port] = ctx
    servers = "\n".join(f"    server 127.0.0.1:{ports[a]} weight={w};" for a, w in WEIGHTS.items())
    (work / "nginx").mkdir(exist_ok=True)
    conf = work / "nginx" / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {work}/nginx/nginx.pid;
error_log {work}/nginx/error.log warn;
worker_rlimit_nofile 30000;
events {{ worker_connections 25000; }}
http {{
  access_log off;
  client_body_temp_path {work}/nginx/body;
  proxy_temp_path {work}/nginx/proxy;
  upstream analyzers {{
{servers}
    keepalive 64;
  }}
  server {{
    listen {listen};
    # Scenario (d)'s emitters register; nginx has no such thing: a fixed answer.
    location = /emitters/register {{
      default_type application/json;
      return 200 '{REGISTERED}';
    }}
    location = /log-packet {{
      proxy_pass {upstream}://analyzers/ingest;
      {proxy_tls}
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }}
    location = /log-packets {{
      client_max_body_size 32m;
      # Keep bodies in memory: nginx's workers cannot write into this run's private temp dir.
      client_body_buffer_size 32m;
      proxy_pass {upstream}://analyzers/ingest;
      {proxy_tls}
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }}
  }}
}}
""")
    proc = subprocess.Popen(
        ["nginx", "-p", str(work / "nginx"), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return FrontEnd("nginx", port, [proc])


def start_haproxy(work: Path, ports: dict[str, int]) -> FrontEnd:
    port = free_port()
    # HAProxy reserves two files a connection and will not start past the hard limit.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    maxconn = 12_000 if hard == resource.RLIM_INFINITY else min(12_000, (hard - 200) // 2)
    servers = "\n".join(f"  server {a} 127.0.0.1:{ports[a]} weight {w}" for a, w in WEIGHTS.items())
    answer = f"http-request return status 200 content-type application/json string '{REGISTERED}'"
    conf = work / "haproxy.cfg"
    conf.write_text(f"""
global
  maxconn {maxconn}
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:{port}
  # Scenario (d)'s emitters register; HAProxy has no such thing: a fixed answer.
  {answer} if {{ path /emitters/register }}
  default_backend analyzers
backend analyzers
  balance roundrobin
  http-reuse always
  http-request set-path /ingest
{servers}
""")
    proc = subprocess.Popen(
        ["haproxy", "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_port(port)
    return FrontEnd("haproxy", port, [proc])


def analyzer_argv(kind: str, aid: str, port: int) -> list[str]:
    """`logdist` analyzers, `foreign` ones (plain aiohttp services: logdist.bench.foreign),
    or those of another format (`sink:FORMAT`: logdist.bench.sinks)."""
    if kind == "foreign":
        return [sys.executable, "-m", "logdist.bench.foreign", "--port", str(port)]
    if kind.startswith("sink:"):
        fmt = kind.split(":", 1)[1]
        return [sys.executable, "-m", "logdist.bench.sinks", "--port", str(port), "--format", fmt]
    return [sys.executable, "-m", "logdist", "analyzer", "serve", "--id", aid] + [
        "--port",
        str(port),
        "--log-level",
        "WARNING",
    ]


def start_analyzers(
    kind: str = "logdist",
    extra: Callable[[str], list[str]] | None = None,
    tls: ssl.SSLContext | None = None,
) -> tuple[dict[str, int], list[subprocess.Popen[bytes]]]:
    """The four analyzers (with `extra(aid)` added to each one's arguments; serving TLS,
    trusted by `tls`, when those say so)."""
    ports = {aid: free_port() for aid in WEIGHTS}
    procs = [
        subprocess.Popen(
            analyzer_argv(kind, aid, port) + (extra(aid) if extra else []),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for aid, port in ports.items()
    ]
    for port in ports.values():
        wait_port(port)
        if tls is not None:
            TLS_PORTS[port] = tls
    return ports, procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
