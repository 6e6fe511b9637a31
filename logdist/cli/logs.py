"""`logdist logs search`: what the analyzers' stores hold, searched across the pool."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from logdist.admin_client import AdminClient
from logdist.cli.client_options import DEFAULT, JsonOption, TokenOption, UrlOption, call
from logdist.cli.settings import NO_FLAGS, Settings, flags
from logdist.cli.tail import LEVEL_STYLE, PipeConsole, quiet_broken_pipe, warn_partial
from logdist.config import setting

app = typer.Typer(
    help="Search the messages the analyzers stored (analyzers started with --store).",
    no_args_is_help=True,
)

SINCE_HELP = "From this time: RFC 3339, epoch ms, or a duration back from now (15m, 2h, 7d)."


@dataclass(frozen=True)
class Filters:
    """What `logs search` narrows the stored messages to: a flag each, sent as the query
    parameter of its name (GET /logs/search)."""

    since: str | None = setting(None, SINCE_HELP)
    until: str | None = setting(None, "Up to this time (same forms as --since).")
    level: tuple[str, ...] = setting(
        (),
        "Only these levels (repeat, or ERROR,FATAL).",
        decls=("--level", "-l"),
        show_default=False,
    )
    emitter: str | None = setting(None, "Only this emitter.")
    service: str | None = setting(None, "Only this service.")
    host: str | None = setting(None, "Only this host.")
    analyzer: str | None = setting(None, "Only these analyzers' stores (a,b).")

    def params(self) -> dict[str, str | None]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["level"] = ",".join(self.level) or None
        return values


@app.command()
@flags(Filters)
def search(
    query: Annotated[
        str | None,
        typer.Argument(
            help='Full text (FTS5): words, "a phrase", prefix*, AND / OR / NOT.',
            show_default=False,
        ),
    ] = None,
    settings: Settings = NO_FLAGS,
    n: Annotated[int, typer.Option("-n", "--limit", help="At most this many messages.")] = 100,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stored messages matching the filters, newest first: a table, or NDJSON with --json.

    Analyzers that did not answer are named on stderr (the results are then partial).
    Exit codes: 0 found (or nothing matched), 1 refused (a bad parameter), 3 unreachable.
    """
    if n < 1:
        raise typer.BadParameter("must be >= 1", param_hint="-n")
    params = {"q": query, **settings.apply(Filters()).params()}
    out = PipeConsole(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False)

    async def run(client: AdminClient) -> None:
        table = Table(box=None, pad_edge=False, show_edge=False)
        for column in ("time (UTC)", "level", "analyzer", "emitter", "service"):
            table.add_column(column, no_wrap=True)
        table.add_column("message", ratio=1, overflow="fold")
        found = 0
        warned: set[str] = set()
        async for entry in client.search_all(n, **params):
            if isinstance(entry, list):
                warn_partial(err, entry, warned)
                continue
            found += 1
            if as_json:
                sys.stdout.buffer.write(orjson.dumps(entry) + b"\n")
            else:
                table.add_row(*row(entry))
        if as_json:
            sys.stdout.flush()
        elif found:
            out.print(table)
        else:
            err.print("no stored message matches")

    try:
        call(url, token, run)
    except BrokenPipeError:
        quiet_broken_pipe()


def row(item: dict[str, Any]) -> list[Text | str]:
    level = str(item.get("level", "-"))
    return [
        Text(str(item["ts"])[5:].replace("T", " ").removesuffix("Z"), "dim"),
        Text(level, LEVEL_STYLE.get(level, "")),
        Text(str(item.get("analyzer") or "-"), "cyan"),
        Text(str(item.get("emitter") or "-"), "magenta"),
        Text(str(item.get("service") or "-"), "blue"),
        str(item.get("message", "")),
    ]
