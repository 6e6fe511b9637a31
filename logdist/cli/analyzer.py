"""`logdist analyzer serve`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from logdist import config
from logdist.analyzer import make_app
from logdist.cli.common import HostOption, LogLevelOption, config_errors, run_daemon

app = typer.Typer(
    help="Analyzers: receive packets, dedupe by packetId, count them.", no_args_is_help=True
)


@app.command()
def serve(
    id: Annotated[str | None, typer.Option("--id", help="Analyzer id.", show_default="a1")] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (0 = any free port).", show_default="9001")
    ] = None,
    host: HostOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            help="Append every packet received to this NDJSON file before acknowledging it.",
            show_default=False,
        ),
    ] = None,
    dedupe_window: Annotated[
        int | None,
        typer.Option(
            help="How many recent packet ids are remembered for dedupe.", show_default="100000"
        ),
    ] = None,
    log_level: LogLevelOption = "INFO",
) -> None:
    """Serve POST /ingest (a packet, a JSON array or NDJSON), GET /health and GET /stats."""
    with config_errors():
        cfg = config.apply(
            config.AnalyzerConfig(),
            id=id,
            port=port,
            host=host,
            output=str(output) if output else None,
            dedupe_window=dedupe_window,
        )
    run_daemon("analyzer", make_app, cfg, log_level)
