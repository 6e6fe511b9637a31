"""Putting load through a front end and measuring it: wrk runs, CPU of every process taking
part, what the analyzers counted, and a run's slices summed into one row."""

from __future__ import annotations

import concurrent.futures
import re
import resource
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from logdist.bench.proxies import FrontEnd, base, cpu_seconds, get_bytes, stats_total
from logdist.bench.scenarios import WEIGHTS


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
        + ["-s", str(lua), base(port)],
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
    status = get_bytes(front.port, "/status", timeout=10)
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
