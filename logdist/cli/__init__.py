"""The `logdist` command: one Typer app per command group, assembled here."""

from __future__ import annotations

import typer

from logdist import __version__
from logdist.cli import analyzer, bench, ctl, distributor, emitter, logs, tail, top, up
from logdist.cli.client_options import add_tls_options

app = typer.Typer(
    name="logdist",
    help="Move log packets from many emitters through one distributor to weighted analyzers.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
app.add_typer(analyzer.app, name="analyzer")
app.add_typer(distributor.app, name="distributor")
app.add_typer(emitter.app, name="emitter")
app.command("up")(up.up)
app.add_typer(ctl.app, name="ctl")
app.add_typer(tail.app, name="tail")
app.add_typer(logs.app, name="logs")
app.command("top")(top.top)
app.command("bench")(bench.bench)
add_tls_options(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"logdist {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Move log packets from many emitters through one distributor to weighted analyzers."""


def main() -> None:
    app()
