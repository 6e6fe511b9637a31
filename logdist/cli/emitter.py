"""`logdist emitter start`."""

from __future__ import annotations

from typing import Annotated

import typer

from logdist import config
from logdist.cli.common import HostOption, LogLevelOption, config_errors, run_daemon
from logdist.emitter import make_app

app = typer.Typer(
    help="Emitters: generate log packets and deliver them to the distributor.", no_args_is_help=True
)


@app.command()
def start(
    id: Annotated[str | None, typer.Option("--id", help="Emitter id.", show_default="e1")] = None,
    distributor: Annotated[
        str | None, typer.Option(help="Distributor base URL.", show_default="http://127.0.0.1:8000")
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(help="Packets per second (0 = generate nothing).", show_default="10"),
    ] = None,
    messages: Annotated[
        str | None, typer.Option(help="Messages per packet: N or MIN-MAX.", show_default="1")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Control API port (0 = any free port).", show_default="0")
    ] = None,
    host: HostOption = None,
    buffer: Annotated[
        int | None,
        typer.Option(
            help="Packets kept until acknowledged; generation waits when full.", show_default="5000"
        ),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Requests in flight to the distributor.", show_default="4")
    ] = None,
    log_level: LogLevelOption = "INFO",
) -> None:
    """Send packets in the seed's format to POST /log-packet; control API on --port."""
    with config_errors():
        cfg = config.apply(
            config.EmitterConfig(),
            id=id,
            distributor=distributor,
            rate=rate,
            messages=messages,
            port=port,
            host=host,
            buffer=buffer,
            concurrency=concurrency,
        )
    run_daemon("emitter", make_app, cfg, log_level)
