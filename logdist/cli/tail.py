"""`logdist tail logs`: what the distributor routes, as readable lines or NDJSON."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.text import Text

from logdist.admin_client import AdminClient
from logdist.cli.client_options import DEFAULT, JsonOption, TokenOption, UrlOption, call
from logdist.core.dedupe import DedupeWindow
from logdist.errors import InvalidRequest
from logdist.search.query import parse_time, ts_ms

app = typer.Typer(help="Follow what the distributor routes.", no_args_is_help=True)

LEVEL_STYLE = {
    "ERROR": "bold red",
    "WARN": "yellow",
    "WARNING": "yellow",
    "DEBUG": "dim",
    "INFO": "green",
}


def line(entry: dict[str, Any]) -> Text:
    """A routed message (its routing time), or a stored one (its own `ts`)."""
    if "routed_at" in entry:
        moment = datetime.fromtimestamp(float(entry["routed_at"]))
    else:
        moment = datetime.fromtimestamp((ts_ms(entry.get("ts"), {}) or 0) / 1000)
    routed = moment.strftime("%H:%M:%S.%f")[:-3]
    level = str(entry.get("level", "-"))
    message = entry.get("message")
    if message is None:
        rest = {
            k: v
            for k, v in entry.items()
            if k not in ("analyzer", "emitter", "packetId", "routed_at", "index")
        }
        message = orjson.dumps(rest).decode()
    return Text.assemble(
        (routed, "dim"),
        " ",
        (str(entry.get("analyzer")), "bold cyan"),
        (" ← ", "dim"),
        (str(entry.get("emitter") or "-"), "magenta"),
        " ",
        (f"{level:<5}", LEVEL_STYLE.get(level.upper(), "")),
        " ",
        (f"{entry.get('service', '')} {entry.get('host', '')}".strip(), "blue"),
        " ",
        str(message),
    )


class PipeConsole(Console):
    def on_broken_pipe(self) -> None:
        # rich exits 1 here; a closed pipe is how `| head` says "enough", not a failure.
        quiet_broken_pipe()


def quiet_broken_pipe() -> None:
    # The reader went away (`| head -3`): stop quietly, and keep Python's exit flush quiet too.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise typer.Exit(0)


@app.command()
def logs(
    n: Annotated[
        int, typer.Option("-n", "--lines", help="How many recent messages to show first.")
    ] = 10,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing messages as they are routed.")
    ] = False,
    analyzer: Annotated[
        str | None, typer.Option(help="Only messages routed to this analyzer.", show_default=False)
    ] = None,
    emitter: Annotated[
        str | None, typer.Option(help="Only messages from this emitter.", show_default=False)
    ] = None,
    level: Annotated[
        str | None,
        typer.Option(help="Only messages at this level (INFO, WARN, ...).", show_default=False),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="First every stored message since then (15m, 2h, RFC 3339), oldest first, "
            "from the analyzers' stores; then, with --follow, live, with no gap and no repeat.",
            show_default=False,
        ),
    ] = None,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print recently routed messages, then (with --follow) each new one; --json gives NDJSON."""
    if n < 0:
        raise typer.BadParameter("must be >= 0", param_hint="-n")
    console = PipeConsole(highlight=False, soft_wrap=True)

    def show(entry: dict[str, Any]) -> None:
        if as_json:
            sys.stdout.buffer.write(orjson.dumps(entry) + b"\n")
            sys.stdout.flush()
        else:
            console.print(line(entry))

    async def run(client: AdminClient) -> None:
        if since is not None:
            filters = {"analyzer": analyzer, "emitter": emitter, "level": level}
            await history_then_live(client, since, follow, filters, show)
            return
        async for entry in client.logs(n, follow, analyzer, emitter, level):
            show(entry)

    try:
        call(url, token, run)
    except BrokenPipeError:
        quiet_broken_pipe()
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def warn_partial(console: Console, partial: list[dict[str, str]], warned: set[str]) -> None:
    """Name on stderr each analyzer that did not answer a search, once."""
    for p in partial:
        if p["analyzer"] not in warned:
            warned.add(p["analyzer"])
            console.print(
                Text.assemble(("partial: ", "bold yellow"), f"{p['analyzer']} did not answer: ")
                + Text(p["error"])
            )


# Stored messages remembered at the seam between history and live (the newest printed).
SEAM = 100_000


async def history_then_live(
    client: AdminClient,
    since: str,
    follow: bool,
    filters: dict[str, str | None],
    show: Callable[[dict[str, Any]], None],
) -> None:
    """Stored messages since `since`, oldest first; then (`follow`) routed ones as they come.

    The live stream is opened first, with the routed ring's backlog, and held while the
    history prints: a message routed before the history was read but stored after is in the
    backlog or the stream (no gap), and one printed from the history is skipped there (no
    repeat, by packetId and index).
    """
    try:
        start = parse_time("since", since, int(time.time() * 1000))
    except InvalidRequest as exc:
        raise typer.BadParameter(
            exc.message.removeprefix("since: "), param_hint="--since"
        ) from None
    held: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    reader: asyncio.Task[None] | None = None
    if follow:
        opened = asyncio.Event()
        stream = client.logs(
            500, True, filters["analyzer"], filters["emitter"], filters["level"], opened
        )

        async def read() -> None:
            try:
                async for entry in stream:
                    await held.put(entry)
            finally:
                held.put_nowait(None)  # the stream ended (the distributor went away)

        reader = asyncio.ensure_future(read())
        opening = asyncio.ensure_future(opened.wait())
        await asyncio.wait([reader, opening], return_when=asyncio.FIRST_COMPLETED)
        if reader.done():  # it could not open: say why
            opening.cancel()
            reader.result()
    printed = DedupeWindow(SEAM)
    warned: set[str] = set()
    err = Console(stderr=True, highlight=False)
    try:
        async for item in client.search_all(None, since=str(start), order="asc", **filters):
            if isinstance(item, list):
                warn_partial(err, item, warned)
                continue
            printed.add(f"{item['packetId']}\x00{item['index']}")
            show(item)
        while reader is not None:
            entry = await held.get()
            if entry is None:
                reader.result()  # why it ended, if it broke
                return
            if f"{entry.get('packetId')}\x00{entry.get('index')}" in printed:
                continue
            if (ts_ms(entry.get("ts"), {}) or int(entry.get("routed_at", 0) * 1000)) < start:
                continue  # the backlog's older messages
            show(entry)
    finally:
        if reader is not None:
            reader.cancel()
