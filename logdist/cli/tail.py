"""`logdist tail logs`: what the distributor routes, as readable lines or NDJSON."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.text import Text

from logdist.cli.client_options import DEFAULT, JsonOption, TokenOption, UrlOption, call
from logdist.client import AdminClient

app = typer.Typer(help="Follow what the distributor routes.", no_args_is_help=True)

LEVEL_STYLE = {
    "ERROR": "bold red",
    "WARN": "yellow",
    "WARNING": "yellow",
    "DEBUG": "dim",
    "INFO": "green",
}


def line(entry: dict[str, Any]) -> Text:
    routed = datetime.fromtimestamp(float(entry.get("routed_at", 0))).strftime("%H:%M:%S.%f")[:-3]
    level = str(entry.get("level", "-"))
    message = entry.get("message")
    if message is None:
        rest = {
            k: v
            for k, v in entry.items()
            if k not in ("analyzer", "emitter", "packetId", "routed_at")
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
        _quiet_broken_pipe()


def _quiet_broken_pipe() -> None:
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
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print recently routed messages, then (with --follow) each new one; --json gives NDJSON."""
    if n < 0:
        raise typer.BadParameter("must be >= 0", param_hint="-n")
    console = PipeConsole(highlight=False, soft_wrap=True)

    async def run(client: AdminClient) -> None:
        async for entry in client.logs(n, follow, analyzer, emitter, level):
            if as_json:
                sys.stdout.buffer.write(orjson.dumps(entry) + b"\n")
                sys.stdout.flush()
            else:
                console.print(line(entry))

    try:
        call(url, token, run)
    except BrokenPipeError:
        _quiet_broken_pipe()
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
