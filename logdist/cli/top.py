"""`logdist top`: a live terminal view of rates, shares, health and queue depth."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import sys
import termios
import time
import tty
from collections import deque
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from logdist.admin_client import AdminClient, ClientFailure
from logdist.cli.client_options import DEFAULT, TokenOption, UrlOption, client_tls, client_token
from logdist.cli.views import (
    analyzers_table,
    analyzers_title,
    cluster_view,
    emitters_view,
    queue_line,
)

RECENT = 10.0  # seconds behind "actual (recent)"


class Rates:
    """Per-analyzer msgs/s from the last two samples, and shares over the last RECENT seconds."""

    def __init__(self) -> None:
        self.samples: deque[tuple[float, dict[str, int]]] = deque()

    def add(self, status: dict[str, Any]) -> tuple[dict[str, float], dict[str, float], float]:
        now = time.monotonic()
        counts = {a["id"]: int(a["delivered_messages"]) for a in status["analyzers"]}
        self.samples.append((now, counts))
        while len(self.samples) > 2 and now - self.samples[1][0] >= RECENT:
            self.samples.popleft()
        if len(self.samples) < 2:
            return {}, {}, 0.0
        (t0, c0), (t1, c1) = self.samples[-2], self.samples[-1]
        dt = max(t1 - t0, 1e-6)
        per_second = {aid: (c1[aid] - c0.get(aid, 0)) / dt for aid in c1}
        base = self.samples[0][1]
        window = {aid: c1[aid] - base.get(aid, 0) for aid in c1}
        total = sum(window.values())
        recent = {aid: (v / total if total else 0.0) for aid, v in window.items()}
        return per_second, recent, sum(per_second.values())


def frame(url: str, status: dict[str, Any] | None, rates: Rates, error: str | None) -> Group:
    head = Text.assemble(
        ("logdist top ", "bold cyan"), (url, "dim"), ("   q or Ctrl-C quits", "dim")
    )
    if status is None:
        return Group(head, Text(error or "connecting…", style="red"))
    per_second, recent, total = rates.add(status)
    parts: list[Any] = [head, queue_line(status, total)]
    if error:
        parts.append(Text(error, style="red"))
    parts += cluster_view(status)
    parts += [
        analyzers_table(
            status["analyzers"],
            per_second,
            recent,
            analyzers_title(status.get("analyzer_summary")),
        ),
        emitters_view(status),
    ]
    return Group(*parts)


def top(
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 1.0,
    once: Annotated[
        bool, typer.Option("--once", help="Print one frame (two samples apart) and exit.")
    ] = False,
) -> None:
    """A live view: per analyzer target vs actual share, msg/s, health, pending; queue; emitters."""
    if interval <= 0:
        raise typer.BadParameter("must be > 0", param_hint="--interval")
    console = Console()
    code = asyncio.run(_run(console, url, client_token(token), interval, once, client_tls()))
    raise typer.Exit(code)


async def _run(
    console: Console,
    url: str,
    token: str | None,
    interval: float,
    once: bool,
    tls: ssl.SSLContext | None = None,
) -> int:
    rates = Rates()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with AdminClient(url, token, timeout=max(2.0, interval), tls=tls) as client:
        if once:
            try:
                await client.status()
                rates.add(await client.status())
                await asyncio.sleep(interval)
                console.print(frame(url, await client.status(), rates, None))
            except ClientFailure as exc:
                console.print(f"logdist: {exc.message}", style="red")
                return exc.exit_code
            return 0
        with (
            _keys(stop),
            Live(console=console, auto_refresh=False, screen=console.is_terminal) as live,
        ):
            status: dict[str, Any] | None = None
            while not stop.is_set():
                error = None
                try:
                    status = await client.status()
                except ClientFailure as exc:
                    error = exc.message
                live.update(frame(url, status, rates, error), refresh=True)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval):
                        await stop.wait()
    return 0


@contextlib.contextmanager
def _keys(stop: asyncio.Event) -> Any:
    """Read single keys from a terminal: `q` sets `stop`. Without a terminal, only signals do."""
    if not sys.stdin.isatty():
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    loop = asyncio.get_running_loop()

    def on_key() -> None:
        if sys.stdin.read(1) in ("q", "Q"):
            stop.set()

    tty.setcbreak(fd)
    loop.add_reader(fd, on_key)
    try:
        yield
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
