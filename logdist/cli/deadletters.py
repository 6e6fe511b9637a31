"""`logdist ctl dead-letters`: packets that analyzers refused, kept until you act on them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from logdist.cli.client_options import DEFAULT, JsonOption, TokenOption, UrlOption, call, print_json
from logdist.cli.views import console

app = typer.Typer(
    help="Packets refused by several analyzers (4xx): list, show, replay after a fix, purge.",
    no_args_is_help=True,
)

IdsArg = Annotated[
    list[str] | None,
    typer.Argument(metavar="[ID]...", help="Dead-letter ids (packet ids); none: all of them."),
]


@app.command("list")
def list_(
    limit: Annotated[int, typer.Option(help="Show at most this many.")] = 1000,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The dead letters, oldest first, with who refused them and how."""
    result = call(url, token, lambda c: c.dead_letters(limit))
    if as_json:
        print_json(result)
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("id", "emitter", "messages", "time", "refused by", "status", "answer"):
        table.add_column(name, no_wrap=name != "answer", overflow="fold")
    for d in result["letters"]:
        table.add_row(
            d["id"],
            d["emitter"] or "-",
            str(d["messages"]),
            d["time"],
            ",".join(d["analyzers"]),
            str(d["last_status"]),
            (d["last_answer"] or "")[:80],
        )
    console().print(table)
    typer.echo(
        f"{result['count']} dead letters, {result['bytes']} of {result['max_bytes']} bytes"
        + (" (FULL: ingest answers 503)" if result["full"] else "")
    )


@app.command()
def show(
    letter: Annotated[str, typer.Argument(metavar="ID", help="Dead-letter id (packet id).")],
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
) -> None:
    """One dead letter as JSON: the packet as received and every refusal."""
    print_json(call(url, token, lambda c: c.dead_letter(letter)))


@app.command()
def replay(
    ids: IdsArg = None,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Put dead letters back in the queue (e.g. once the analyzers' schema is fixed)."""
    result = call(url, token, lambda c: c.replay_dead_letters(ids))
    if as_json:
        print_json(result)
        return
    line = f"replayed {result['replayed']}; {result['left']} left"
    if result["not_replayed"]:
        line += f" ({result['not_replayed']} did not fit in the queue: replay again)"
    typer.echo(line)


@app.command()
def purge(
    ids: IdsArg = None,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete dead letters for good."""
    result = call(url, token, lambda c: c.purge_dead_letters(ids))
    if as_json:
        print_json(result)
    else:
        typer.echo(f"purged {result['purged']}; {result['left']} left")
