"""Scenario (m) of `logdist bench`: fair admission and dispatch under a burst.

Two analyzers that take `SINK_DELAY` s over each request, one packet a request (`format=json`),
so what they can take is capped: 2 x `MAX_REQUESTS` / `SINK_DELAY` packets/s (1,600). Beside
them a fleet of 1,000 steady emitters (`logdist emitter start --fleet`, 1 packet/s each:
under two thirds of the cap) and one bursty emitter: wrk posting 10-message packets as fast as
it is answered over 32 connections (ten times the cap and more). Run twice, each with fresh
processes: fairness on (the default) and off (`--fair-share-above 0`: one FIFO queue, as
before). For each, over `--seconds` of the burst:

- steady packets accepted: the fleet's 2xx over its attempts (a 429 or 503 is retried later);
- steady delay: each steady packet's generation (its messages' `ts`, to the millisecond) to
  its arrival at an analyzer, p50 and p99, as the analyzers measure it (the row's p99), and
  to the distributor's 202, p99, as the fleet measures it;
- the burst's share: wrk's 2xx over its requests;
- what the analyzers took, packets/s, over the cap.

The analyzers are this module's own small aiohttp service (run as `python -m
logdist.bench.fairness --port P --delay S`): a logdist analyzer does not time arrivals.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiohttp import web

from logdist.bench import load
from logdist.bench.proxies import free_port, get_json, stop, wait_port
from logdist.bench.scenarios import Scenario
from logdist.core import latency

STEADY = 1000  # emitters, 1 packet/s each
SINK_DELAY = 0.02  # s a request
MAX_REQUESTS = 16  # concurrent requests to each analyzer
ANALYZERS = 2
CAP = ANALYZERS * MAX_REQUESTS / SINK_DELAY  # packets/s
BURST_CONNECTIONS = 32
DISTRIBUTOR = ["--queue-capacity", "2000"]  # the default pending windows (8,192)
BURST = Scenario("m", "10-message packets on /log-packet", "/log-packet", "application/json",
                 1, (10, 10))  # fmt: skip
MODES: tuple[tuple[str, list[str]], ...] = (
    ("logdist fair", []),
    ("logdist fifo", ["--fair-share-above", "0"]),
)


class Runner(Protocol):
    work: Path
    opts: Any

    def record(self, scenario: str, row: dict[str, Any], **extra: Any) -> None: ...


def run(runner: Runner) -> None:
    for name, extra in MODES:
        row = measure(runner.work, runner.opts.seconds, extra)
        runner.record("m", {"front_end": name, **row})


def spawn(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(work: Path, seconds: float, extra: list[str]) -> dict[str, Any]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sinks = [free_port() for _ in range(ANALYZERS)]
        for port in sinks:
            argv = [sys.executable, "-m", "logdist.bench.fairness", "--port", str(port)]
            procs.append(spawn([*argv, "--delay", str(SINK_DELAY)]))
        for port in sinks:
            wait_port(port)
        dport, fport = free_port(), free_port()
        argv = [sys.executable, "-m", "logdist", "distributor", "serve", "--port", str(dport)]
        argv += [*DISTRIBUTOR, "--max-requests", str(MAX_REQUESTS), "--log-level", "WARNING"]
        for i, port in enumerate(sinks):
            argv += ["-a", f"s{i}=http://127.0.0.1:{port}/ingest;format=json"]
        procs.append(spawn([*argv, *extra]))
        wait_port(dport, proc=procs[-1])
        url = f"http://127.0.0.1:{dport}"
        argv = [sys.executable, "-m", "logdist", "emitter", "start", "--fleet", str(STEADY)]
        argv += ["--id", "steady", "--rate", "1", "--distributor", url, "--port", str(fport)]
        procs.append(spawn([*argv, "--log-level", "WARNING"]))
        wait_port(fport, timeout=60, proc=procs[-1])
        deadline = time.monotonic() + 120
        while get_json(fport, "/metrics", 10)["registered"] < STEADY:
            if time.monotonic() > deadline:
                raise RuntimeError("the steady fleet did not register in 120 s")
            time.sleep(0.5)
        time.sleep(3)  # steady state before the burst
        before = get_json(fport, "/metrics", 10)
        for port in sinks:
            get_json(port, "/stats?reset=1", 10)
        lua = work / f"m-{time.time_ns()}.lua"
        lua.write_text(BURST.lua(f"burst-{time.time_ns()}"))
        started = time.monotonic()
        burst = load.run_wrk(dport, seconds, BURST_CONNECTIONS, lua)
        elapsed = time.monotonic() - started
        after = get_json(fport, "/metrics", 10)
        stats = [get_json(p, "/stats", 10) for p in sinks]
        return summarize(before, after, stats, burst, elapsed)
    finally:
        stop(list(reversed(procs)))


def percentile(ordered: list[float], p: float) -> float:
    """The `p`th percentile (0-100) of sorted values, nearest rank."""
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def summarize(
    before: dict[str, Any],
    after: dict[str, Any],
    stats: list[dict[str, Any]],
    burst: dict[str, Any],
    elapsed: float,
) -> dict[str, Any]:
    sent = after["sent_packets"] - before["sent_packets"]
    refused = after["retries"] - before["retries"]
    lags = sorted(lag for s in stats for lag in s["steady_lags_ms"])
    packets = sum(s["steady_packets"] + s["burst_packets"] for s in stats)
    messages = sum(s["steady_messages"] + s["burst_messages"] for s in stats)
    requests = burst["requests"]
    return {
        "messages_per_s": round(messages / elapsed),
        "packets_per_s": round(packets / elapsed),
        "p99_ms": round(percentile(lags, 99), 1) if lags else None,
        "errors": refused,
        "steady_accepted_pct": round(100 * sent / (sent + refused), 3) if sent else 0.0,
        "steady_p50_ms": round(percentile(lags, 50), 1) if lags else None,
        # Generation to the distributor's 202 (a full queue holds requests before a 503).
        "steady_admitted_p99_ms": latency.percentile(
            latency.diff(after["latency_ms"], before["latency_ms"]), 0.99
        ),
        "steady_delivered_per_s": round(sum(s["steady_packets"] for s in stats) / elapsed),
        "burst_accepted_pct": round(100 * (requests - burst["non_2xx"]) / requests, 2)
        if requests
        else 0.0,
        "burst_requests_per_s": round(requests / elapsed),
        "burst_delivered_per_s": round(sum(s["burst_packets"] for s in stats) / elapsed),
        "cap_packets_per_s": round(CAP),
        "analyzers_over_cap": round(packets / elapsed / CAP, 3),
    }


# -- the analyzers: a delay a request, and each steady packet's arrival timed ---------------


def sink(delay: float) -> web.Application:
    state: dict[str, Any] = {}

    def reset() -> None:
        state.update(steady_packets=0, steady_messages=0, burst_packets=0, burst_messages=0,
                     steady_lags_ms=[])  # fmt: skip

    async def ingest(request: web.Request) -> web.Response:
        packet = orjson.loads(await request.read())
        await asyncio.sleep(delay)
        now = time.time()
        messages = packet["messages"]
        if packet["emitter"].startswith("steady-"):
            state["steady_packets"] += 1
            state["steady_messages"] += len(messages)
            ts = datetime.fromisoformat(messages[0]["ts"]).timestamp()
            state["steady_lags_ms"].append(round(1000 * (now - ts), 1))
        else:
            state["burst_packets"] += 1
            state["burst_messages"] += len(messages)
        return web.json_response({"status": "ok"})

    async def stats(request: web.Request) -> web.Response:
        answer = web.json_response(state)
        if request.query.get("reset"):
            reset()
        return answer

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "batch": False})

    reset()
    app = web.Application(client_max_size=64 << 20)
    app.router.add_post("/ingest", ingest)
    app.router.add_get("/stats", stats)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="(m)'s analyzer: a delay a request, timed.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=SINK_DELAY)
    args = parser.parse_args()
    web.run_app(sink(args.delay), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
