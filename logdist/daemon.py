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
from logdist.log import event

log = logging.getLogger("logdist.daemon")


class ListenError(LogdistError):
    """The daemon could not bind its address."""


@dataclass
class BoundAddress:
    """Where the daemon listens, once it does (port 0 picks a free port)."""

    url: str = ""
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait(self) -> str:
        await self.ready.wait()
        return self.url


BOUND = web.AppKey("bound", BoundAddress)


def _describe_bind_error(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "address already in use"
    if exc.errno == errno.EACCES:
        return "permission denied"
    return exc.strerror or str(exc)


@dataclass
class Listener:
    """Serves a daemon's socket in place of aiohttp's own protocol (see distributor.front).

    `protocol(server)` gives the factory for each connection's protocol; it may hand a
    connection to `server`, aiohttp's. `close()` runs once the socket stops accepting.
    """

    protocol: Callable[[web.Server], Callable[[], asyncio.Protocol]]
    close: Callable[[], Awaitable[None]]


LISTENER = web.AppKey("listener", Listener)


@dataclass
class Listening:
    """A daemon's app being served; `await stop()` stops accepting and cleans up."""

    url: str
    runner: web.AppRunner
    server: asyncio.AbstractServer | None = None
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
    try:
        if listener is None:
            site = web.TCPSite(runner, host, port, backlog=4096)
            await site.start()
            bound = runner.addresses[0][:2]
            server = None
        else:
            assert runner.server is not None
            server = await asyncio.get_running_loop().create_server(
                listener.protocol(runner.server), host, port, backlog=4096, reuse_address=True
            )
            bound = server.sockets[0].getsockname()[:2]
    except OSError as exc:
        await runner.cleanup()
        raise ListenError(f"cannot listen on {host}:{port}: {_describe_bind_error(exc)}") from None
    return Listening(f"http://{bound[0]}:{bound[1]}", runner, server, listener)


async def serve(app: web.Application, host: str, port: int, name: str) -> None:
    """Serve `app` on host:port until SIGINT/SIGTERM; a second signal exits at once."""
    if BOUND not in app:
        app[BOUND] = BoundAddress()
    bound = app[BOUND]
    listening = await listen(app, host, port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            event(
                log, "forced_exit", logging.WARNING, daemon=name, signal=signal.Signals(signum).name
            )
            os._exit(128 + signum)
        event(log, "stopping", daemon=name, signal=signal.Signals(signum).name)
        stop.set()

    # Handlers first: whoever reads the address below may signal at once.
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    bound.url = listening.url
    bound.ready.set()
    event(log, "listening", daemon=name, url=bound.url, pid=os.getpid())
    try:
        await stop.wait()
    finally:
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
