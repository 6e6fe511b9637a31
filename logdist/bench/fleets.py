"""Scenario (d) of `logdist bench`: tens of thousands of real emitters, as fleets.

`fleets` processes of `logdist emitter start --fleet N` (N = emitters / fleets), each member
at 1 packet/s. Against logdist every member registers and holds a lease as a separate emitter
would; nginx and HAProxy have no registration, so for them the bench's config answers
`POST /emitters/register` itself (a fixed 200) and they carry the same packets. The load:

1. start the fleets; wait until every member is registered (the fleets' own count);
2. let them run 2 s, then measure `seconds`: each fleet's latency histogram (a packet's
   generation to the front end's 2xx) and counters, read before and after, so p50/p99 and
   errors (retried sends, rejections) are of that window only;
3. meanwhile, against logdist, watch its views as one dashboard would: `GET /status` and one
   `/ws/metrics` subscription, each once a second, keeping the largest of each; and read the
   distributor's control-plane meter (registrations, leases, views: see
   logdist.distributor.observe.meter) and its process CPU at both ends of the window;
4. stop the fleets (they drain what they hold).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

import aiohttp

from logdist.bench.proxies import cpu_seconds, free_port, stop, wait_port
from logdist.core.latency import BOUNDS_MS, diff, percentile

# Seconds the fleets run registered before the window opens.
WARMUP = 2.0
REGISTER_TIMEOUT = 180.0


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def start(port: int, emitters: int, fleets: int, batch: int) -> tuple[list[int], list[Any]]:
    """The fleets, as `logdist emitter start --fleet` processes; their control ports."""
    sizes = [emitters // fleets + (i < emitters % fleets) for i in range(fleets)]
    ports, procs = [], []
    for i, size in enumerate(s for s in sizes if s):
        fport = free_port()
        argv = [sys.executable, "-m", "logdist", "emitter", "start", "--fleet", str(size)]
        argv += ["--id", f"bench{i}", "--rate", "1", "--fleet-batch", str(batch)]
        argv += ["--distributor", f"http://127.0.0.1:{port}", "--port", str(fport)]
        argv += ["--log-level", "WARNING"]
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        ports.append(fport)
    for fport in ports:
        wait_port(fport, timeout=60)
    return ports, procs


def snapshot(ports: list[int]) -> list[dict[str, Any]]:
    return [get_json(f"http://127.0.0.1:{p}/metrics") for p in ports]


class Views:
    """A dashboard's worth of watching: /status and /ws/metrics once a second each."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.status_bytes = 0
        self.frame_bytes = 0
        self.frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Views:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    async def _run(self) -> None:
        base = f"http://127.0.0.1:{self.port}"
        async with aiohttp.ClientSession() as session:

            async def frames() -> None:
                async with session.ws_connect(base + "/ws/metrics") as ws:
                    async for msg in ws:
                        self.frames += 1
                        self.frame_bytes = max(self.frame_bytes, len(msg.data))

            task = asyncio.create_task(frames())
            while not self._stop.is_set():
                async with session.get(base + "/status") as resp:
                    self.status_bytes = max(self.status_bytes, len(await resp.read()))
                await asyncio.sleep(1.0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await task


def run(
    port: int,
    seconds: float,
    emitters: int,
    fleets: int,
    batch: int,
    logdist: bool,
    front_pids: list[int],
) -> dict[str, Any]:
    ports, procs = start(port, emitters, fleets, batch)
    try:
        started = time.monotonic()
        while True:
            registered = sum(m["registered"] for m in snapshot(ports))
            if registered >= emitters:
                break
            if time.monotonic() - started > REGISTER_TIMEOUT:
                raise RuntimeError(f"{registered} of {emitters} emitters registered")
            time.sleep(0.5)
        registering = time.monotonic() - started
        time.sleep(WARMUP)
        meter = f"http://127.0.0.1:{port}/status"
        control0 = get_json(meter)["control_plane"]["seconds"] if logdist else None
        cpu0 = cpu_seconds(front_pids)
        before = snapshot(ports)
        t0 = time.monotonic()
        with Views(port) if logdist else contextlib.nullcontext() as views:
            time.sleep(seconds)
        after = snapshot(ports)
        window = time.monotonic() - t0
        cpu = cpu_seconds(front_pids) - cpu0
        status = get_json(meter) if logdist else None
    finally:
        stop(procs)
    latency: dict[str, int] = {}
    for a, b in zip(before, after, strict=True):
        for k, v in diff(b["latency_ms"], a["latency_ms"]).items():
            latency[k] = latency.get(k, 0) + v

    def delta(key: str) -> int:
        return sum(b[key] - a[key] for a, b in zip(before, after, strict=True))

    def ms(p: float) -> float:
        value = percentile(latency, p)
        # None: nothing delivered (errors say why); inf: past the histogram's last bound.
        return 0.0 if value is None else min(value, 10 * BOUNDS_MS[-1])

    sent, requests = delta("sent_packets"), delta("requests")
    result: dict[str, Any] = {
        "emitters": emitters,
        "fleets": len(ports),
        "fleet_batch": batch,
        "registering_s": round(registering, 1),
        "window_s": round(window, 1),
        "requests": requests,
        "errors": delta("retries") + delta("rejected"),
        "packets_per_s": round(sent / window, 1),
        "requests_per_s": round(requests / window, 1),
        "p50_ms": ms(0.5),
        "p99_ms": ms(0.99),
        "latency_ms": latency,
        "front_end_cpu_pct": round(100 * cpu / window, 1),
    }
    if logdist and status is not None and control0 is not None and views is not None:
        control = status["control_plane"]["seconds"]
        result["control_plane_pct"] = {
            k: round(100 * (control[k] - control0[k]) / window, 2) for k in control
        }
        result["emitters_registered"] = status["emitter_summary"]["total"]
        result["emitters_active"] = status["emitter_summary"]["active"]
        result["status_bytes"] = views.status_bytes
        result["ws_frame_bytes"] = views.frame_bytes
        result["ws_frames"] = views.frames
    return result
