"""`logdist analyzer serve`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from logdist import config
from logdist.analyzer import make_app
from logdist.cli.common import HostOption, LogLevelOption, config_errors, opt, run_daemon
from logdist.config import AnalyzerConfig as C

app = typer.Typer(
    help="Analyzers: receive packets, dedupe by packetId, count them.", no_args_is_help=True
)


@app.command()
def serve(
    id: Annotated[str | None, opt(C, "id", "Analyzer id.", "--id")] = None,
    port: Annotated[int | None, opt(C, "port", "Port to listen on (0 = any free port).")] = None,
    host: HostOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            help="Append every packet received to this NDJSON file before acknowledging it.",
            show_default=False,
        ),
    ] = None,
    dedupe_window: Annotated[
        int | None, opt(C, "dedupe_window", "Recent packet ids remembered for dedupe.")
    ] = None,
    max_body_bytes: Annotated[
        int | None, opt(C, "max_body_bytes", "Largest request body accepted (413 past it).")
    ] = None,
    fail_rate: Annotated[
        float | None,
        opt(C, "fail_rate", "Fault injection: answer 500 to this fraction of ingests."),
    ] = None,
    delay: Annotated[
        float | None, opt(C, "delay", "Fault injection: seconds to take over each ingest.")
    ] = None,
    log_level: LogLevelOption = "INFO",
) -> None:
    """Serve POST /ingest (a packet, a JSON array or NDJSON), GET /health and GET /stats."""
    with config_errors():
        cfg = config.apply(
            C(),
            id=id,
            port=port,
            host=host,
            output=str(output) if output else None,
            dedupe_window=dedupe_window,
            max_body_bytes=max_body_bytes,
            fail_rate=fail_rate,
            delay=delay,
        )
    run_daemon("analyzer", make_app, cfg, log_level)
