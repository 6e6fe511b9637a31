"""Scenario (l): TLS on both sides of the front end, keep-alive.

Four analyzers serving TLS (certificates from a local CA made for the run, as `logdist up
--tls` makes them) take what logdist's distributor serving TLS forwards over TLS, verifying
them; nginx (one worker) terminates TLS in front of the same four and forwards over TLS,
verifying them too. Three figures, each taken in slices in turn with its comparison:

- (a) small packets, logdist-TLS / nginx-TLS;
- (c) NDJSON bodies, logdist with TLS on both sides / logdist without (the four plain
  analyzers);
- handshakes/s of new connections: (a)'s requests each on a connection of its own
  (`Connection: close`), through each TLS front end.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from logdist.bench import load, proxies
from logdist.bench.options import Options
from logdist.bench.proxies import FrontEnd
from logdist.bench.scenarios import SCENARIOS

Contender = tuple[str, Callable[[], FrontEnd], dict[str, Any]]


class Runner(Protocol):
    """What (l) uses of the bench's runner."""

    work: Path
    opts: Options
    ports: dict[str, int]
    secure: Secure | None

    def interleaved(self, key: str, contenders: list[Contender]) -> None: ...

    def record(self, scenario: str, row: dict[str, Any], **extra: Any) -> None: ...


# Connections of the handshake runs (each request a new connection).
HANDSHAKE_CONNECTIONS = 16


class Secure:
    """The run's CA, the four TLS analyzers, and how to start each TLS front end."""

    def __init__(self, runner: Runner) -> None:
        from logdist.local.certs import LocalCA, local_names  # cryptography: only when asked

        self.runner = runner
        ca = LocalCA(runner.work / "tls")
        pair = ca.issue("server", local_names("127.0.0.1"))
        self.cert, self.key, self.ca = str(pair.cert), str(pair.key), str(ca.path)
        self.ctx = ssl.create_default_context(cafile=self.ca)
        self.ports: dict[str, int] = {}
        self.pids: list[int] = []

    def serve(self) -> list[Any]:
        """Start the four TLS analyzers; their processes."""
        ports, procs = proxies.start_analyzers(
            "logdist", lambda aid: ["--tls-cert", self.cert, "--tls-key", self.key], tls=self.ctx
        )
        self.ports, self.pids = ports, [p.pid for p in procs]
        return procs

    def logdist(self) -> FrontEnd:
        fe = proxies.start_logdist(
            self.runner.work, self.ports, "--tls-cert", self.cert, "--tls-key", self.key,
            "--ca", self.ca, fmt=self.runner.opts.fmt, tls=self.ctx,
        )  # fmt: skip
        fe.name = "logdist-tls"
        return fe

    def nginx(self) -> FrontEnd:
        fe = proxies.start_nginx(
            self.runner.work, self.ports, (self.cert, self.key, self.ca, self.ctx)
        )
        fe.name = "nginx-tls"
        return fe

    def plain(self) -> FrontEnd:
        """logdist without TLS, into the four plain analyzers: (c)'s comparison."""
        fe = proxies.start_logdist(self.runner.work, self.runner.ports, fmt=self.runner.opts.fmt)
        fe.name = "logdist"
        return fe

    def handshakes(self, fe: FrontEnd) -> dict[str, Any]:
        """(a) with a new connection a request, through `fe`: a row whose requests/s are its
        handshakes/s."""
        r = self.runner
        lua = r.work / f"{fe.name}-handshakes.lua"
        lua.write_text(SCENARIOS["a"].lua(f"{fe.name}-hs-{time.time_ns()}", close=True))
        seconds = r.opts.seconds / r.opts.rounds

        def work() -> dict[str, Any]:
            return load.run_wrk(fe.port, seconds, HANDSHAKE_CONNECTIONS, lua)

        part = load.measure(fe, self.ports, self.pids, work)
        row = load.summarize([part])
        row["handshakes_per_s"] = round(part["load"]["requests"] / part["elapsed"], 1)
        return row


def run(runner: Runner) -> None:
    """(l): logdist-TLS beside nginx-TLS on (a), beside plain logdist on (c), and both
    front ends' handshakes/s."""
    secure = Secure(runner)
    procs = secure.serve()
    runner.secure = secure
    try:
        fronts = [("nginx", secure.nginx)] if "nginx" in runner.opts.front_ends else []
        runner.interleaved(
            "a",
            [("l", secure.logdist, {"like": "a", "tls": True})]
            + [("l", start, {"like": "a", "tls": True}) for _, start in fronts],
        )
        runner.interleaved(
            "c",
            [
                ("l", secure.logdist, {"like": "c", "tls": True}),
                ("l", secure.plain, {"like": "c", "tls": False}),
            ],
        )
        for start in [secure.logdist, *(s for _, s in fronts)]:
            fe = start()
            try:
                row = secure.handshakes(fe)
            finally:
                fe.stop()
            runner.record("l", row, like="handshakes", tls=True)
            print(f"  l {fe.name:<16} {row['handshakes_per_s']:>12,.0f} handshakes/s", flush=True)
    finally:
        proxies.stop(procs)
        for port in secure.ports.values():
            proxies.TLS_PORTS.pop(port, None)
