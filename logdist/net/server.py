"""Run any daemon's app: bind, log the address, wait for a signal, drain, clean up."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import resource
import signal
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from logdist.errors import LogdistError
from logdist.events import event
from logdist.net.tls import ServerTls, TlsServer

log = logging.getLogger("logdist.daemon")


class ListenError(LogdistError):
    """The daemon could not bind its address."""


# Set by `logdist up` for its children: the pid whose death must stop this daemon.
PARENT_ENV = "LOGDIST_PARENT_PID"
PR_SET_PDEATHSIG = 1


def parent_to_outlive() -> int | None:
    """The pid in LOGDIST_PARENT_PID, if this daemon was started to die with it."""
    try:
        return int(os.environ[PARENT_ENV])
    except (KeyError, ValueError):
        return None


def die_with_parent() -> bool:
    """Ask Linux to send SIGTERM when the parent dies (prctl PR_SET_PDEATHSIG): the daemon
    then stops as on any SIGTERM, draining. False where that is not available."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


async def watch_parent(parent: int, gone: Callable[[], None], every: float = 0.5) -> None:
    """Call `gone` once the parent is no longer `parent`: the parent died before the death
    signal was set, or the system has none. (An orphan's parent becomes init or a
    subreaper, never the old pid again.)"""
    while os.getppid() == parent:
        await asyncio.sleep(every)
    gone()


@dataclass
class BoundAddress:
    """Where the daemon listens, once it does (port 0 picks a free port)."""

    url: str = ""
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait(self) -> str:
        await self.ready.wait()
        return self.url


BOUND = web.AppKey("bound", BoundAddress)


def describe_bind_error(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "address already in use"
    if exc.errno == errno.EACCES:
        return "permission denied"
    return exc.strerror or str(exc)


@dataclass
class Listener:
    """Serves a daemon's socket in place of aiohttp's own protocol (see distributor.inputs.packets).

    `protocol(server)` gives the factory for each connection's protocol; it may hand a
    connection to `server`, aiohttp's. `close()` runs once the socket stops accepting.
    """

    protocol: Callable[[web.Server], Callable[[], asyncio.Protocol]]
    close: Callable[[], Awaitable[None]]


LISTENER = web.AppKey("listener", Listener)
# A daemon that serves TLS: every connection's handshake first (net.tls).
TLS = web.AppKey("tls", ServerTls)


@dataclass
class Listening:
    """A daemon's app being served; `await stop()` stops accepting and cleans up."""

    url: str
    runner: web.AppRunner
    server: asyncio.Server | TlsServer | None = None
    listener: Listener | None = None

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.listener is not None:
            await self.listener.close()
        await self.runner.cleanup()


async def listen(app: web.Application, host: str, port: int) -> Listening:
    """Bind host:port and serve `app` there (through its `LISTENER` if it has one)."""
    # Idle keep-alive connections close after 15 s (aiohttp's default is an hour).
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=5.0, keepalive_timeout=15.0
    )
    await runner.setup()
    listener = app.get(LISTENER)
    tls = app.get(TLS)
    try:
        if listener is None and tls is None:
            site = web.TCPSite(runner, host, port, backlog=4096)
            await site.start()
            bound = runner.addresses[0][:2]
            server: asyncio.Server | TlsServer | None = None
        else:
            assert runner.server is not None
            factory: Callable[[], asyncio.BaseProtocol] = (
                runner.server if listener is None else listener.protocol(runner.server)
            )
            if tls is not None:
                server = await tls.serve(factory, host, port)
            else:
                server = await asyncio.get_running_loop().create_server(
                    factory, host, port, backlog=4096, reuse_address=True
                )
            bound = server.sockets[0].getsockname()[:2]
    except OSError as exc:
        await runner.cleanup()
        raise ListenError(f"cannot listen on {host}:{port}: {describe_bind_error(exc)}") from None
    scheme = "http" if tls is None else "https"
    return Listening(f"{scheme}://{bound[0]}:{bound[1]}", runner, server, listener)


async def serve(app: web.Application, host: str, port: int, name: str) -> None:
    """Serve `app` on host:port until SIGINT/SIGTERM; a second signal exits at once."""
    if BOUND not in app:
        app[BOUND] = BoundAddress()
    bound = app[BOUND]
    listening = await listen(app, host, port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signalled = False

    def on_signal(signum: int) -> None:
        nonlocal signalled
        if signalled:
            event(
                log, "forced_exit", logging.WARNING, daemon=name, signal=signal.Signals(signum).name
            )
            os._exit(128 + signum)
        signalled = True
        if not stop.is_set():
            event(log, "stopping", daemon=name, signal=signal.Signals(signum).name)
            stop.set()

    def parent_gone() -> None:
        if not stop.is_set():
            event(log, "stopping", daemon=name, reason="parent_exited")
            stop.set()

    # Handlers first: whoever reads the address below may signal at once.
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    parent = parent_to_outlive()
    watcher = None
    if parent is not None:
        # Started by `logdist up`: stop with it, even when it is killed without a word.
        die_with_parent()
        watcher = loop.create_task(watch_parent(parent, parent_gone))
    bound.url = listening.url
    bound.ready.set()
    event(log, "listening", daemon=name, url=bound.url, pid=os.getpid())
    try:
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        await listening.stop()
        event(log, "stopped", daemon=name)


def raise_file_limit() -> int:
    """Let a daemon hold as many sockets as the system allows it (nginx's
    `worker_rlimit_nofile`): the soft limit on open files is often far below the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` on uvloop when it is installed."""
    raise_file_limit()
    # What exists by now (modules, config, the app) lives as long as the daemon: keep it out
    # of collections, and collect the young generation less often (a daemon allocates many
    # short-lived objects a request; the default collects every 700).
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)
