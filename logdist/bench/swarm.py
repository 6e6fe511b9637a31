"""Many slow emitters at once: the load wrk cannot drive (scenario (d) of `logdist bench`).

Opens `--connections` keep-alive connections to one port and has each post one packet every
`--interval` seconds, the sends spread evenly over the interval (open loop: a send is due on
its schedule, not when the previous answer came; a connection never has two requests out).
Latency is from writing a request to reading its whole answer. Prints one JSON object:
connections made, requests sent, 2xx answers, errors by kind, and latency percentiles.

    python -m logdist.bench.swarm --port 8000 [--connections 10000] [--interval 1] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

from logdist.daemon import raise_file_limit, run

TIMEOUT = 5.0


class Conn(asyncio.Protocol):
    """One emitter's connection: sends when due, reads one answer at a time."""

    def __init__(self, swarm: Swarm, index: int) -> None:
        self.swarm = swarm
        self.index = index
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.sent_at = 0.0
        self.busy = False
        self.due = 0.0
        self.seq = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy:
            self.swarm.errors["connection_lost"] += 1
            self.busy = False
        self.transport = None

    def send(self) -> None:
        s = self.swarm
        if self.transport is None or self.transport.is_closing() or not s.running:
            return
        if self.busy:  # the last answer is late: send as soon as it comes
            s.late += 1
            return
        self.seq += 1
        body = s.body % (self.index, self.seq)
        self.transport.write(s.head % len(body) + body)
        self.sent_at = time.perf_counter()
        self.busy = True
        s.sent += 1

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(self.buf) < end + 4 + length:
            return
        del self.buf[: end + 4 + length]
        s = self.swarm
        status = int(head.split(b" ", 2)[1])
        self.busy = False
        if 200 <= status < 300:
            s.ok += 1
            s.latencies.append(time.perf_counter() - self.sent_at)
        else:
            s.errors[f"http_{status}"] += 1
        loop = asyncio.get_running_loop()
        self.due += s.interval
        if self.due <= loop.time():
            self.send()
            self.due = loop.time()
        loop.call_at(self.due, self.tick)

    def tick(self) -> None:
        if not self.busy:
            self.send()

    def check_timeout(self, now: float) -> None:
        if self.busy and now - self.sent_at > TIMEOUT and self.transport is not None:
            self.swarm.errors["timeout"] += 1
            self.busy = False
            self.transport.close()


class Swarm:
    def __init__(self, host: str, port: int, path: str, interval: float) -> None:
        self.host, self.port, self.interval = host, port, interval
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        ).encode()
        message = (
            b'{"ts":"2026-01-01T00:00:00Z","level":"INFO","service":"swarm",'
            b'"host":"bench","message":"hello"}'
        )
        run_id = str(time.time_ns()).encode()
        self.body = (
            b'{"packetId":"swarm-'
            + run_id
            + b'-%d-%d","emitter":"swarm","messages":['
            + message
            + b"]}"
        )
        self.conns: list[Conn] = []
        self.running = True
        self.sent = self.ok = self.late = 0
        self.errors: Counter[str] = Counter()
        self.latencies: list[float] = []

    async def connect(self, count: int) -> None:
        """Open `count` connections, a few hundred at a time (the accept backlog is finite)."""
        loop = asyncio.get_running_loop()

        async def one(i: int) -> None:
            conn = Conn(self, i)
            try:
                await loop.create_connection(lambda: conn, self.host, self.port)
            except OSError as exc:
                self.errors[f"connect_{type(exc).__name__}"] += 1
                return
            self.conns.append(conn)

        for start in range(0, count, 500):
            await asyncio.gather(*(one(i) for i in range(start, min(count, start + 500))))

    async def run(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.1
        n = max(1, len(self.conns))
        for i, conn in enumerate(self.conns):
            conn.due = t0 + self.interval * i / n
            loop.call_at(conn.due, conn.tick)
        end = t0 + seconds
        while loop.time() < end:
            await asyncio.sleep(0.25)
            now = time.perf_counter()
            for conn in self.conns:
                conn.check_timeout(now)
        self.running = False
        # Answers still owed get up to TIMEOUT seconds, then count as timeouts.
        deadline = loop.time() + TIMEOUT
        while any(c.busy for c in self.conns) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        now = time.perf_counter() + TIMEOUT + 1
        for conn in self.conns:
            conn.check_timeout(now)
            if conn.transport is not None:
                conn.transport.close()

    def report(self, wanted: int, elapsed: float) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else 0.0

        return {
            "connections_wanted": wanted,
            "connections": len(self.conns),
            "sent": self.sent,
            "ok": self.ok,
            "errors": dict(self.errors),
            "error_count": sum(self.errors.values()),
            "late_sends": self.late,
            "requests_per_s": round(self.ok / elapsed, 1) if elapsed else 0.0,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "max_ms": round(lat[-1] * 1000, 2) if lat else 0.0,
        }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    swarm = Swarm(args.host, args.port, args.path, args.interval)
    await swarm.connect(args.connections)
    started = time.monotonic()
    await swarm.run(args.seconds)
    return swarm.report(args.connections, time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/log-packet")
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between sends")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    limit = raise_file_limit()
    if limit < args.connections + 16:
        sys.exit(
            f"swarm: {args.connections} connections need that many files; the limit is {limit}"
        )
    result: dict[str, Any] = {}

    async def go() -> None:
        result.update(await main_async(args))

    run(go())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
