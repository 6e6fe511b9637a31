"""`logdist ctl limit` and `ctl limits`: per-emitter rate limits on a running distributor."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from logdist.cli.client_options import DEFAULT, JsonOption, TokenOption, UrlOption, call, print_json
from logdist.cli.common import fail
from logdist.cli.completion import complete_emitter
from logdist.cli.views import console


def limit(
    emitter: Annotated[
        str,
        typer.Argument(
            metavar="EMITTER",
            help="An emitter id, or an id prefix ending in * (quote it: 'web-*').",
            autocompletion=complete_emitter,
        ),
    ],
    rate: Annotated[
        float | None,
        typer.Argument(
            metavar="[RATE]",
            min=0,
            help="Messages a second it may send (0: no limit, even past --emitter-rate).",
            show_default=False,
        ),
    ] = None,
    burst: Annotated[
        float | None,
        typer.Option(
            min=1,
            help="Messages it may send at once (default: a second's worth).",
            show_default=False,
        ),
    ] = None,
    clear: Annotated[
        bool,
        typer.Option("--clear", help="Drop the limit set at runtime: the configured one holds."),
    ] = False,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Limit an emitter's (or id prefix's) rate at runtime: past it, its requests are
    answered 429 with Retry-After. Kept across restarts in the distributor's --state-dir."""
    if clear == (rate is not None):
        raise fail("give a RATE or --clear (one of them)", code=2)
    if clear:
        result = call(url, token, lambda c: c.clear_limit(emitter))
        line = f"{emitter}: runtime limit cleared"
    else:
        assert rate is not None
        result = call(url, token, lambda c: c.set_limit(emitter, rate, burst))
        got = result["set"]
        line = (
            f"{emitter}: no limit"
            if not got["rate"]
            else f"{emitter}: {got['rate']:g} messages/s, burst {got['burst']:g}"
        )
    if not result["kept"]:
        line += " (not kept across a restart: the distributor has no --state-dir)"
    if as_json:
        print_json(result)
    else:
        typer.echo(line)


def limits(
    url: UrlOption = DEFAULT, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """The per-emitter rate limits: the default, those configured, those set at runtime."""
    result = call(url, token, lambda c: c.limits())
    if as_json:
        print_json(result)
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("emitter", "messages/s", "burst", "from"):
        table.add_column(name, justify="right" if name in ("messages/s", "burst") else "left")

    def add(row: dict[str, Any], where: str) -> None:
        rate = f"{row['rate']:g}" if row["rate"] else "no limit"
        burst = f"{row['burst']:g}" if row["rate"] else "-"
        table.add_row(row["emitter"], rate, burst, where)

    for row in result["runtime"]:
        add(row, "ctl limit")
    for row in result["configured"]:
        add(row, "config")
    if result["default"] is not None:
        add({**result["default"], "emitter": "(every other)"}, "--emitter-rate")
    if not table.row_count:
        typer.echo("no limits: every emitter may send as fast as there is room")
        return
    console().print(table)


def register(app: typer.Typer) -> None:
    app.command()(limit)
    app.command()(limits)
