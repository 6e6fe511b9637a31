"""Scenarios (a) and (c) of the performance issue: logdist beside nginx and HAProxy, in one run.

Four logdist analyzers (weights 4:3:2:1) are the upstreams of three front ends in turn:
logdist's distributor, nginx and HAProxy, each a weighted proxy to the same analyzers. wrk
posts one-message packets to each with the same connections and duration. Delivered
packets/s is counted at the analyzers (what actually arrived), not at the front end.

    python -m logdist.bench.proxies [--seconds 10] [--connections 64] [--scenario a c] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEIGHTS = {"a1": 4, "a2": 3, "a3": 2, "a4": 1}
# wrk's request generator: PACKETS packets of MESSAGES messages per request, unique ids.
LUA = """
local counter = 0
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local message = '{"ts":"2026-01-01T00:00:00Z","level":"INFO","service":"bench",' ..
  '"host":"wrk","message":"hello"}'
local messages = message
for i = 2, MESSAGES do messages = messages .. "," .. message end
request = function()
  local lines = {}
  for i = 1, PACKETS do
    counter = counter + 1
    local id = RUN .. '-' .. tid .. '-' .. counter
    lines[i] = '{"packetId":"' .. id .. '","emitter":"wrk","messages":[' .. messages .. ']}'
  end
  return wrk.format("POST", PATH, {["Content-Type"] = CTYPE}, table.concat(lines, "\\n"))
end
"""


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    ctype: str
    packets: int
    messages: int

    def lua(self, run: str) -> str:
        head = (
            f'RUN = "{run}"\nPATH = "{self.path}"\nCTYPE = "{self.ctype}"\n'
            f"PACKETS = {self.packets}\nMESSAGES = {self.messages}\n"
        )
        return head + LUA


SCENARIOS = {
    "a": Scenario("(a) 1-message packets on /log-packet", "/log-packet", "application/json", 1, 1),
    "c": Scenario(
        "(c) NDJSON, 100 packets x 10 messages a request",
        "/log-packets",
        "application/x-ndjson",
        100,
        10,
    ),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
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


def stats_total(ports: dict[str, int]) -> dict[str, tuple[int, int]]:
    """Per analyzer: packets received (duplicates included) and messages."""
    out = {}
    for aid, port in ports.items():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as resp:
            s = json.load(resp)
        out[aid] = (int(s["packets"]) + int(s["duplicates"]), int(s["messages"]))
    return out


@dataclass
class FrontEnd:
    name: str
    port: int
    procs: list[subprocess.Popen[bytes]]

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
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


def start_logdist(work: Path, ports: dict[str, int]) -> FrontEnd:
    port = free_port()
    refs = [
        arg
        for aid, w in WEIGHTS.items()
        for arg in ("--analyzer", f"{aid}=http://127.0.0.1:{ports[aid]}/ingest@{w}")
    ]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "logdist",
            "distributor",
            "serve",
            "--port",
            str(port),
            *refs,
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # noqa: SIM115
    wait_port(port)
    time.sleep(1.5)  # first health probes
    return FrontEnd("logdist", port, [proc])


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
events {{ worker_connections 8192; }}
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
    servers = "\n".join(f"  server {a} 127.0.0.1:{ports[a]} weight {w}" for a, w in WEIGHTS.items())
    conf = work / "haproxy.cfg"
    conf.write_text(f"""
global
  maxconn 8192
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:{port}
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


def run_wrk(port: int, seconds: int, connections: int, lua: Path) -> dict[str, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "2",
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            "-s",
            str(lua),
            f"http://127.0.0.1:{port}",
        ],
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
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "requests": int(requests.group(1)) if requests else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1) if errors else "",  # type: ignore[dict-item]
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
    }


def measure(
    front: FrontEnd,
    ports: dict[str, int],
    seconds: int,
    connections: int,
    work: Path,
    scenario: Scenario,
) -> dict[str, Any]:
    lua = work / f"{front.name}.lua"
    lua.write_text(scenario.lua(f"{front.name}-{time.time_ns()}"))
    before = stats_total(ports)
    cpu_before = cpu_seconds(front.pids())
    analyzers_cpu_before = cpu_seconds(list(ANALYZER_PIDS))
    started = time.monotonic()
    load = run_wrk(front.port, seconds, connections, lua)
    # Count what arrived until the front end has nothing left in flight (logdist acks first).
    settled = stats_total(ports)
    while True:
        time.sleep(0.25)
        now = stats_total(ports)
        if now == settled:
            break
        settled = now
    elapsed = time.monotonic() - started
    packets = sum(settled[a][0] - before[a][0] for a in ports)
    messages = {a: settled[a][1] - before[a][1] for a in ports}
    total = sum(messages.values())
    wsum = sum(WEIGHTS.values())
    share_error = (
        max(abs(messages[a] / total - WEIGHTS[a] / wsum) for a in ports) if total else float("nan")
    )
    return {
        "scenario": scenario.name,
        "front_end": front.name,
        "delivered_packets_per_s": round(packets / elapsed, 1),
        "delivered_messages_per_s": round(total / elapsed, 1),
        "delivered_packets": packets,
        "accepted_2xx_requests": load["requests"] - load["non_2xx"],
        "p50_ms": load["p50_ms"],
        "p99_ms": load["p99_ms"],
        "cpu_percent_front_end": round(100 * (cpu_seconds(front.pids()) - cpu_before) / elapsed, 1),
        "cpu_percent_analyzers": round(
            100 * (cpu_seconds(list(ANALYZER_PIDS)) - analyzers_cpu_before) / elapsed, 1
        ),
        "message_share_error_points": round(100 * share_error, 2),
        "socket_errors": load["socket_errors"],
    }


ANALYZER_PIDS: set[int] = set()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--json", type=Path, default=Path("bench-results/proxies.json"))
    parser.add_argument("--only", nargs="*", choices=["logdist", "nginx", "haproxy"])
    parser.add_argument(
        "--scenario", nargs="*", choices=sorted(SCENARIOS), default=sorted(SCENARIOS)
    )
    args = parser.parse_args()
    missing = [tool for tool in ("wrk", "nginx", "haproxy") if not shutil.which(tool)]
    if missing:
        sys.exit(f"logdist bench: needs {', '.join(missing)} (scripts/bench installs them)")
    work = Path(tempfile.mkdtemp(prefix="logdist-bench-"))
    ports = {aid: free_port() for aid in WEIGHTS}
    analyzers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "logdist",
                "analyzer",
                "serve",
                "--id",
                aid,
                "--port",
                str(port),
                "--dedupe-window",
                "2000000",
                "--log-level",
                "WARNING",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for aid, port in ports.items()
    ]
    ANALYZER_PIDS.update(p.pid for p in analyzers)
    rows = []
    try:
        for port in ports.values():
            wait_port(port)
        starters = {"logdist": start_logdist, "nginx": start_nginx, "haproxy": start_haproxy}
        for key in args.scenario:
            for name, start in starters.items():
                if args.only and name not in args.only:
                    continue
                front = start(work, ports)
                try:
                    row = measure(
                        front, ports, args.seconds, args.connections, work, SCENARIOS[key]
                    )
                    rows.append(row)
                finally:
                    front.stop()
    finally:
        for p in analyzers:
            p.send_signal(signal.SIGTERM)
        for p in analyzers:
            p.wait(15)
    cols = (
        "front_end",
        "delivered_packets_per_s",
        "delivered_messages_per_s",
        "p50_ms",
        "p99_ms",
        "cpu_percent_front_end",
        "cpu_percent_analyzers",
        "message_share_error_points",
    )
    print(f"{args.connections} connections, {args.seconds} s each, 4 analyzers 4:3:2:1")
    for key in args.scenario:
        name = SCENARIOS[key].name
        group = [r for r in rows if r["scenario"] == name]
        nginx = next((r for r in group if r["front_end"] == "nginx"), None)
        base = nginx["delivered_messages_per_s"] if nginx else 0
        print(f"\n{name}")
        print(" ".join(f"{c.replace('delivered_', ''):>14.14}" for c in cols) + f" {'vs nginx':>9}")
        for r in group:
            ratio = r["delivered_messages_per_s"] / base if base else float("nan")
            r["ratio_to_nginx"] = round(ratio, 3)
            print(" ".join(f"{r[c]!s:>14}" for c in cols) + f" {ratio:>8.2f}x")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "seconds": args.seconds,
                "connections": args.connections,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
