"""The front ends `logdist bench` compares, and the wrk load it puts through them.

Four logdist analyzers (weights 4:3:2:1) are the upstreams of three front ends in turn:
logdist's distributor, nginx and HAProxy, each a weighted proxy to the same analyzers. Load
is the same for each; delivered packets and messages are counted at the analyzers (what
actually arrived), not at the front end.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WEIGHTS = {"a1": 4, "a2": 3, "a3": 2, "a4": 1}
# Each wrk thread gets its number (`tid`) and counts its requests (`counter`).
LUA_THREADS = """
local counter = 0
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
"""
# wrk's request generator: PACKETS packets a request, each of MIN..MAX messages, unique ids.
LUA = (
    LUA_THREADS
    + """
function init(args)
  math.randomseed(tid * 7919 + 17)
end
local message = '{"ts":"2026-01-01T00:00:00Z","level":"INFO","service":"bench",' ..
  '"host":"wrk","message":"hello"}'
local lists = {}
local list = message
for n = 1, MAX do
  lists[n] = list
  list = list .. "," .. message
end
request = function()
  local lines = {}
  for i = 1, PACKETS do
    counter = counter + 1
    local id = RUN .. '-' .. tid .. '-' .. counter
    local n = MIN
    if MAX > MIN then n = math.random(MIN, MAX) end
    lines[i] = '{"packetId":"' .. id .. '","emitter":"wrk","messages":[' .. lists[n] .. ']}'
  end
  return wrk.format("POST", PATH, {["Content-Type"] = CTYPE}, table.concat(lines, "\\n"))
end
"""
)


@dataclass(frozen=True)
class Scenario:
    key: str
    name: str
    path: str
    ctype: str
    packets: int
    messages: tuple[int, int]

    def lua(self, run: str) -> str:
        lo, hi = self.messages
        head = (
            f'RUN = "{run}"\nPATH = "{self.path}"\nCTYPE = "{self.ctype}"\n'
            f"PACKETS = {self.packets}\nMIN = {lo}\nMAX = {hi}\n"
        )
        return head + LUA


SCENARIOS = {
    "a": Scenario(
        "a", "1-message packets on /log-packet", "/log-packet", "application/json", 1, (1, 1)
    ),
    "b": Scenario(
        "b",
        "packets of 1-100 messages on /log-packet",
        "/log-packet",
        "application/json",
        1,
        (1, 100),
    ),
    "c": Scenario(
        "c",
        "NDJSON, 100 packets x 10 messages a request",
        "/log-packets",
        "application/x-ndjson",
        100,
        (10, 10),
    ),
}


# What nginx and HAProxy answer a registration with in scenario (d) (logdist's lease figures).
REGISTERED = '{"lease":60,"renew":20}'


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


def analyzer_stats(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as resp:
        stats: dict[str, Any] = json.load(resp)
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
) -> FrontEnd:
    """logdist's distributor; `analyzers` are --analyzer values (default: the four), each
    given `format = fmt` when one is named. Returns once every analyzer is up (probed
    within the distributor's probe budget: allow `healthy_within` seconds)."""
    port = free_port()
    refs = analyzers or [
        f"{aid}=http://127.0.0.1:{ports[aid]}/ingest@{w}" for aid, w in WEIGHTS.items()
    ]
    config = work / "logdist-analyzers.toml"
    config.write_text(
        "\n".join(
            f'[[analyzers]]\nid = "{ref.split("=", 1)[0]}"\n'
            f'url = "{ref.split("=", 1)[1].rsplit("@", 1)[0]}"\n'
            f"weight = {ref.rsplit('@', 1)[1]}\n" + (f'format = "{fmt}"\n' if fmt else "")
            for ref in refs
        )
    )
    for attempt in range(3):
        proc = subprocess.Popen(
            [
                sys.executable,
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
    wait_healthy(port, len(refs), healthy_within)
    return FrontEnd("logdist", port, [proc])


def wait_healthy(port: int, count: int, timeout: float = 60.0) -> None:
    """Until the distributor has probed `count` analyzers up."""
    deadline = time.monotonic() + timeout
    up = 0
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as resp:
            up = json.load(resp)["analyzer_summary"]["health"]["up"]
        if up >= count:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the distributor on {port} saw {up} of {count} analyzers up")


def start_nginx(work: Path, ports: dict[str, int]) -> FrontEnd:
    port = free_port()
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
    listen 127.0.0.1:{port} backlog=4096;
    # Scenario (d)'s emitters register; nginx has no such thing: a fixed answer.
    location = /emitters/register {{
      default_type application/json;
      return 200 '{REGISTERED}';
    }}
    location = /log-packet {{
      proxy_pass http://analyzers/ingest;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
    location = /log-packets {{
      client_max_body_size 32m;
      # Keep bodies in memory: nginx's workers cannot write into this run's private temp dir.
      client_body_buffer_size 32m;
      proxy_pass http://analyzers/ingest;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
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


def run_wrk_spread(
    ports: list[int], seconds: float, connections: int, luas: list[Path]
) -> dict[str, Any]:
    """wrk against each of `ports` at once, each with its own script (packet ids must not
    repeat across them: the analyzers would drop the repeats), the connections shared out:
    one result."""
    share = max(1, connections // len(ports))

    def one(i: int) -> dict[str, Any]:
        return run_wrk(ports[i], seconds, share, luas[i])

    with concurrent.futures.ThreadPoolExecutor(len(ports)) as pool:
        results = list(pool.map(one, range(len(ports))))
    return {
        "requests": sum(r["requests"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "non_2xx": sum(r["non_2xx"] for r in results),
        "socket_errors": "; ".join(r["socket_errors"] for r in results if r["socket_errors"]),
        "p50_ms": max(r["p50_ms"] for r in results),
        "p99_ms": max(r["p99_ms"] for r in results),
    }


def run_wrk(port: int, seconds: float, connections: int, lua: Path) -> dict[str, Any]:
    threads = min(2, connections)
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s"]
        + ["--latency"]
        + ["-s", str(lua), f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def latency(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    requests = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: (.*)", out)
    socket_errors = sum(int(n) for n in re.findall(r"\d+", socket.group(1))) if socket else 0
    non_2xx = int(non2xx.group(1)) if non2xx else 0
    return {
        "requests": int(requests.group(1)) if requests else 0,
        "errors": non_2xx + socket_errors,
        "non_2xx": non_2xx,
        "socket_errors": socket.group(1).strip() if socket else "",
        "p50_ms": round(latency("50"), 2),
        "p99_ms": round(latency("99"), 2),
    }


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def idle(front: FrontEnd, seconds: float) -> dict[str, Any]:
    """The front end's CPU with no load and nobody watching (% of a core over `seconds`),
    then the size of one GET /status."""
    pids = front.pids()
    before, started = cpu_seconds(pids), time.monotonic()
    time.sleep(seconds)
    cpu = cpu_seconds(pids) - before
    elapsed = time.monotonic() - started
    with urllib.request.urlopen(f"http://127.0.0.1:{front.port}/status", timeout=10) as resp:
        status = resp.read()
    return {
        "seconds": round(elapsed, 1),
        "cpu_pct": round(100 * cpu / elapsed, 2),
        "status_bytes": len(status),
    }


def measure(
    front: FrontEnd,
    ports: dict[str, int],
    analyzer_pids: list[int],
    load: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """Run `load` through `front`; count what reached the analyzers once it settles.

    The raw figures of one slice; `summarize` makes a table row of one or more.
    """
    before = stats_total(ports)
    cpu_before = cpu_seconds(front.pids())
    analyzers_before = cpu_seconds(analyzer_pids)
    load_before = children_cpu()
    busy_before, all_before = machine_busy()
    parts_before = {name: cpu_seconds(pids) for name, pids in front.parts.items()}
    started = time.monotonic()
    result = load()
    # Count what arrived until the front end has nothing left in flight (logdist acks first).
    settled = stats_total(ports)
    while True:
        time.sleep(0.25)
        now = stats_total(ports)
        if now == settled:
            break
        settled = now
    elapsed = time.monotonic() - started
    busy_after, all_after = machine_busy()
    return {
        "front_end": front.name,
        "elapsed": elapsed,
        "packets": sum(settled[a][0] - before[a][0] for a in ports),
        "messages": {a: settled[a][1] - before[a][1] for a in ports},
        "cpu_front_end": cpu_seconds(front.pids()) - cpu_before,
        "cpu_analyzers": cpu_seconds(analyzer_pids) - analyzers_before,
        "cpu_load": children_cpu() - load_before,
        "busy": busy_after - busy_before,
        "ticks": all_after - all_before,
        "load": result,
        "cpu_parts": {n: cpu_seconds(pids) - parts_before[n] for n, pids in front.parts.items()},
    }


def summarize(slices: list[dict[str, Any]]) -> dict[str, Any]:
    """One table row from the slices of one front end's load: totals over their time, the
    median p50 and the worst p99."""
    elapsed = float(sum(s["elapsed"] for s in slices))
    packets = sum(s["packets"] for s in slices)
    messages = {a: sum(s["messages"][a] for s in slices) for a in slices[0]["messages"]}
    total = sum(messages.values())
    wsum = sum(WEIGHTS.values())
    share_error = (
        max(abs(messages[a] / total - WEIGHTS[a] / wsum) for a in messages)
        if total
        else float("nan")
    )
    loads = [s["load"] for s in slices]
    p50s = sorted(load["p50_ms"] for load in loads)

    def cpu(key: str) -> float:
        seconds = float(sum(s[key] for s in slices))
        return round(100 * seconds / elapsed, 1)

    def cpu_part(name: str) -> float:
        return round(100 * float(sum(s["cpu_parts"][name] for s in slices)) / elapsed, 1)

    return {
        "front_end": slices[0]["front_end"],
        "packets_per_s": round(packets / elapsed, 1),
        "messages_per_s": round(total / elapsed, 1),
        "delivered_packets": packets,
        "delivered_messages": total,
        "requests": sum(load["requests"] for load in loads),
        "errors": sum(load["errors"] for load in loads),
        "p50_ms": p50s[len(p50s) // 2],
        "p99_ms": max(load["p99_ms"] for load in loads),
        "cpu_front_end": cpu("cpu_front_end"),
        "cpu_analyzers": cpu("cpu_analyzers"),
        "cpu_load": cpu("cpu_load"),
        "machine_busy": round(
            100 * sum(s["busy"] for s in slices) / max(1, sum(s["ticks"] for s in slices)), 1
        ),
        "share_error_points": round(100 * share_error, 2),
        "shares": {a: round(messages[a] / total, 4) if total else 0.0 for a in messages},
        "rounds": len(slices),
        # Each part's CPU (% of a core) and microseconds of it a delivered message.
        **(
            {
                "cpu_parts": {n: cpu_part(n) for n in slices[0]["cpu_parts"]},
                "cpu_us_per_message": {
                    n: round(1e6 * sum(s["cpu_parts"][n] for s in slices) / max(1, total), 2)
                    for n in slices[0]["cpu_parts"]
                },
            }
            if slices[0].get("cpu_parts")
            else {}
        ),
        "load": {k: v for k, v in loads[0].items() if k not in ("requests", "errors")}
        if len(loads) == 1
        else [{k: v for k, v in load.items() if k not in ("requests", "errors")} for load in loads],
    }


def analyzer_argv(kind: str, aid: str, port: int) -> list[str]:
    """`logdist` analyzers, or `foreign` ones: plain aiohttp services (logdist.bench.foreign)."""
    if kind == "foreign":
        return [sys.executable, "-m", "logdist.bench.foreign", "--port", str(port)]
    return [sys.executable, "-m", "logdist", "analyzer", "serve", "--id", aid] + [
        "--port",
        str(port),
        "--log-level",
        "WARNING",
    ]


def start_analyzers(
    kind: str = "logdist", extra: Callable[[str], list[str]] | None = None
) -> tuple[dict[str, int], list[subprocess.Popen[bytes]]]:
    """The four analyzers (with `extra(aid)` added to each one's arguments)."""
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
