"""`logdist up`: run a whole local topology as child processes, and stop them all cleanly.

Each daemon is a `logdist` subprocess; its log lines are relayed prefixed with its name, as
foreman and docker compose do. Stop order is emitters, then the distributor (which drains),
then analyzers, so that what is in flight still has somewhere to go.

SIGINT, SIGTERM and SIGHUP (the terminal closed) stop everything that way. If `up` itself is
killed without a word (SIGKILL), its daemons stop by themselves: each is told its parent's
pid (LOGDIST_PARENT_PID) and asks Linux for a SIGTERM when that parent dies (see
daemon.die_with_parent), with a watch on its parent pid behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path

from logdist.config import AnalyzerConfig, EmitterConfig, Topology
from logdist.config.fields import argv_of
from logdist.local import natsd
from logdist.local.ports import Holder, holders
from logdist.net.server import PARENT_ENV, die_with_parent

STOP_TIMEOUT = 15.0


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: asyncio.subprocess.Process | None = None
    # Not a logdist daemon (a NATS server): Linux is asked, in the child, to SIGTERM it when
    # `up` dies, since it cannot watch LOGDIST_PARENT_PID itself.
    foreign: bool = False
    relay: asyncio.Task[None] | None = field(default=None, repr=False)


def _logdist(*args: str) -> list[str]:
    return [sys.executable, "-m", "logdist", *args]


def analyzer_argv(cfg: AnalyzerConfig) -> list[str]:
    return _logdist("analyzer", "serve", *argv_of(cfg))


def emitter_argv(cfg: EmitterConfig) -> list[str]:
    return _logdist("emitter", "start", *argv_of(cfg))


def children(
    topology: Topology,
    config_path: Path,
    state_dir: Path | None,
    spool_dir: Path | None = None,
    nats_dir: Path | None = None,
) -> tuple[list[Child], list[Child], list[Child], list[Child]]:
    """The NATS servers, analyzers, distributors and emitters to start, in that order."""
    analyzers = [Child(a.id, analyzer_argv(a)) for a in topology.analyzers]
    argv = _logdist("distributor", "serve", "--config", str(config_path))
    emitters = [Child(e.id, emitter_argv(e)) for e in topology.emitters]
    cluster = topology.cluster
    if cluster is None:
        if state_dir is not None:
            argv += ["--state-dir", str(state_dir)]
        if spool_dir is not None:
            argv += ["--spool-dir", str(spool_dir)]
        return [], analyzers, [Child("distributor", argv)], emitters
    # A cluster: JetStream keeps the queue and the control plane (no spool, no state dir).
    nats: list[Child] = []
    servers = topology.distributor.cluster.servers
    if not servers:
        assert nats_dir is not None
        nats = [
            Child(name, cmd, foreign=True)
            for name, cmd in natsd.write_configs(cluster, nats_dir, topology.tls)
        ]
        servers = cluster.nats_urls(tls=topology.tls is not None)
    replicas = []
    for k, url in enumerate(topology.replica_urls(), 1):
        extra = ["--id", f"d{k}", "--port", url.rsplit(":", 1)[1], "--cluster", ",".join(servers)]
        syslog = topology.distributor.syslog
        for flag, port in (("--syslog-tcp", syslog.tcp), ("--syslog-udp", syslog.udp)):
            if port:  # each replica takes syslog on its own ports: d1's, d1's + 1, …
                extra += [flag, str(port + k - 1)]
        replicas.append(Child(f"d{k}", argv + extra))
    return nats, analyzers, replicas, emitters


async def _listening(
    host: str, port: int, timeout: float, tls: ssl.SSLContext | None = None
) -> bool:
    """Wait until something accepts connections on host:port (and, with `tls`, finishes a
    handshake: a connection dropped half way would be logged as a refused one)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        try:
            _, writer = await asyncio.open_connection(host, port, ssl=tls)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


async def _relay(child: Child, width: int) -> None:
    assert child.proc is not None and child.proc.stderr is not None
    prefix = f"{child.name:<{width}} | ".encode()
    out = sys.stdout.buffer
    async for line in child.proc.stderr:
        # A closed terminal (EIO) or pipe: keep reading, so the child never blocks on a write.
        with contextlib.suppress(OSError, ValueError):
            out.write(prefix + line)
            out.flush()


def say(text: str) -> None:
    """A line of `up`'s own on stderr, if there is still somewhere to write it."""
    with contextlib.suppress(OSError, ValueError):
        print(text, file=sys.stderr, flush=True)


async def _start(child: Child, width: int) -> None:
    child.proc = await asyncio.create_subprocess_exec(
        *child.argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        env={**os.environ, PARENT_ENV: str(os.getpid())},
        preexec_fn=die_with_parent if child.foreign else None,
    )
    child.relay = asyncio.get_running_loop().create_task(_relay(child, width))


async def _stop(group: list[Child]) -> None:
    running = [c for c in group if c.proc is not None and c.proc.returncode is None]
    for child in running:
        assert child.proc is not None
        with contextlib.suppress(ProcessLookupError):
            child.proc.send_signal(signal.SIGTERM)
    for child in running:
        assert child.proc is not None
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await child.proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                child.proc.kill()
            await child.proc.wait()
    for child in group:
        if child.relay is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await child.relay


def endpoints(topology: Topology) -> list[tuple[str, str, int]]:
    """(daemon, host, port) of every fixed port the topology's daemons listen on."""
    ends = [(a.id, a.host, a.port) for a in topology.analyzers]
    d = topology.distributor
    if topology.cluster is None:
        ends.append(("distributor", d.host, d.port))
    else:
        for k in range(topology.cluster.distributors):
            ends.append((f"d{k + 1}", d.host, d.port + k))
            if d.syslog.tcp:
                ends.append((f"d{k + 1} syslog", d.syslog.host, d.syslog.tcp + k))
        if not d.cluster.servers:
            ends += [(name, "127.0.0.1", port) for name, port in natsd.ports(topology.cluster)]
    if d.syslog.tcp and topology.cluster is None:
        ends.append(("distributor syslog", d.syslog.host, d.syslog.tcp))
    ends += [(e.id, e.host, e.port) for e in topology.emitters]
    return [end for end in ends if end[2] != 0]


def busy_message(busy: list[tuple[str, int, Holder | None]]) -> str:
    """One line naming what holds the topology's ports."""
    parts = []
    pids = []
    for name, port, holder in busy:
        if holder is None:
            parts.append(f"{name} :{port} (held by a process this user cannot see)")
        else:
            parts.append(f"{name} :{port} (pid {holder.pid}: {holder.command})")
            pids.append(str(holder.pid))
    earlier = any(h is not None and "logdist" in h.command for _, _, h in busy)
    what = "daemons of an earlier run still hold" if earlier else "something else holds"
    hint = f"; stop them (kill {' '.join(sorted(set(pids)))})" if pids else ""
    return f"logdist up: {what} its ports: {', '.join(parts)}{hint} or change the ports"


async def run_topology(
    topology: Topology,
    config_path: Path,
    banner: str,
    state_dir: Path | None = None,
    spool_dir: Path | None = None,
    nats_dir: Path | None = None,
) -> int:
    """Start every daemon of `topology`, print `banner`, wait for a signal, stop them all.

    NATS servers first (a cluster's), then analyzers, then the distributor (or its
    replicas), and the emitters once it listens. An analyzer, emitter, NATS server or one of
    several replicas that dies is reported and the rest keep running (failover is something
    to watch); if the distributor dies — every replica of a cluster — everything stops and
    the exit code is 1.
    """
    busy = holders(endpoints(topology))
    if busy:
        say(busy_message(busy))
        return 1
    groups = children(topology, config_path, state_dir, spool_dir, nats_dir)
    return await Supervisor(topology, *groups, nats_dir=nats_dir).run(banner)


class Supervisor:
    """The children of one `logdist up`, started in order, watched, and stopped in reverse."""

    def __init__(
        self,
        topology: Topology,
        nats: list[Child],
        analyzers: list[Child],
        distributors: list[Child],
        emitters: list[Child],
        nats_dir: Path | None,
    ) -> None:
        self.topology = topology
        self.nats, self.analyzers = nats, analyzers
        self.distributors, self.emitters = distributors, emitters
        self.nats_dir = nats_dir
        self.width = max(len(c.name) for c in [*nats, *analyzers, *distributors, *emitters])
        self.stop = asyncio.Event()
        self.tls = None if topology.tls is None else ssl.create_default_context(
            cafile=f"{topology.tls}/ca.pem"
        )  # fmt: skip
        self.died: list[str] = []
        self.gone: list[str] = []
        self.watchers: list[asyncio.Task[None]] = []

    async def run(self, banner: str) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, self.stop.set)
        try:
            if await self.start_all():
                with contextlib.suppress(OSError, ValueError):
                    print(banner, flush=True)
                await self.stop.wait()
        finally:
            await self.stop_all()
        return 1 if self.died else 0

    async def start_all(self) -> bool:
        """Everyone started, each group once the one before listens; False if one did not."""
        await self.launch(self.nats)
        cluster = self.topology.cluster
        if self.nats and cluster is not None:
            ports = [("127.0.0.1", cluster.nats_port + i) for i in range(len(self.nats))]
            await self.listening(f"a NATS server (its log: {self.nats_dir}/nN.log)", ports)
        if self.stop.is_set():
            return False
        await self.launch([*self.analyzers, *self.distributors])
        d = self.topology.distributor
        ends = [(d.host, int(u.rsplit(":", 1)[1])) for u in self.topology.replica_urls()]
        if not await self.listening("the distributor", ends):
            return False
        await self.launch(self.emitters)
        return True

    async def stop_all(self) -> None:
        self.stop.set()
        await _stop(self.emitters)
        await _stop(self.distributors)
        await _stop(self.analyzers)
        await _stop(self.nats)
        for task in self.watchers:
            task.cancel()

    async def launch(self, group: list[Child]) -> None:
        loop = asyncio.get_running_loop()
        for child in group:
            await _start(child, self.width)
            self.watchers.append(loop.create_task(self.watch(child)))

    async def watch(self, child: Child) -> None:
        assert child.proc is not None
        code = await child.proc.wait()
        if self.stop.is_set():
            return
        essential = child in self.distributors
        if essential:
            self.gone.append(child.name)
            essential = len(self.gone) == len(self.distributors)
        what = "stopping the rest" if essential else "the rest keep running"
        say(f"logdist up: {child.name} exited with code {code}; {what}")
        if essential:
            self.died.append(child.name)
            self.stop.set()

    async def listening(self, what: str, ends: list[tuple[str, int]]) -> bool:
        for host, port in ends:
            tls = self.tls if what == "the distributor" else None
            if not await _listening(host, port, 20.0, tls) and not self.stop.is_set():
                say(f"logdist up: {what} is not listening on {host}:{port}")
                self.died.append(what)
                self.stop.set()
        return not self.stop.is_set()
