"""`logdist emitter start`."""

from __future__ import annotations

from typing import Annotated

import typer

from logdist import config
from logdist.cli.common import HostOption, LogLevelOption, config_errors, opt, run_daemon
from logdist.config import EmitterConfig as C
from logdist.emitter import make_app

app = typer.Typer(
    help="Emitters: generate log packets and deliver them to the distributor.", no_args_is_help=True
)


@app.command()
def start(
    id: Annotated[str | None, opt(C, "id", "Emitter id.", "--id")] = None,
    distributor: Annotated[
        str | None, opt(C, "distributor", "Distributor base URL.", metavar="URL")
    ] = None,
    rate: Annotated[
        float | None, opt(C, "rate", "Packets per second (0 = generate nothing).")
    ] = None,
    messages: Annotated[
        str | None, opt(C, "messages", "Messages per packet: N or MIN-MAX.", metavar="N|MIN-MAX")
    ] = None,
    port: Annotated[int | None, opt(C, "port", "Control API port (0 = any free port).")] = None,
    host: HostOption = None,
    buffer: Annotated[
        int | None, opt(C, "buffer", "Packets kept until acknowledged; generation waits when full.")
    ] = None,
    concurrency: Annotated[
        int | None, opt(C, "concurrency", "Requests in flight to the distributor.")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="LOGDIST_INGEST_TOKEN",
            help="The distributor's ingest token.",
            show_default=False,
        ),
    ] = None,
    log_level: LogLevelOption = "INFO",
) -> None:
    """Send packets in the seed's format to POST /log-packet; control API on --port."""
    with config_errors():
        cfg = config.apply(
            C(),
            id=id,
            distributor=distributor,
            rate=rate,
            messages=messages,
            port=port,
            host=host,
            buffer=buffer,
            concurrency=concurrency,
            token=token,
        )
    run_daemon("emitter", make_app, cfg, log_level)
