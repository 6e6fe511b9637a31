"""`logdist analyzer serve`."""

from __future__ import annotations

import typer

from logdist.cli.common import LogLevelOption, config_errors, run_daemon
from logdist.cli.settings import NO_FLAGS, Settings, flags
from logdist.config import AnalyzerConfig

app = typer.Typer(
    help="Analyzers: receive packets, dedupe by packetId, count them, and with --store keep "
    "them searchable.",
    no_args_is_help=True,
)


@app.command()
@flags(AnalyzerConfig)
def serve(settings: Settings = NO_FLAGS, log_level: LogLevelOption = "INFO") -> None:
    """Serve POST /ingest (a packet, a JSON array or NDJSON), GET /health and GET /stats.

    With --store every packet is written to the store before it is acknowledged (deduped by
    packetId across restarts), and GET /search, /histogram and /context answer from it.
    """
    with config_errors():
        cfg = settings.apply(AnalyzerConfig())
    from logdist.analyzer import make_app  # here, not at the top: `logdist --help` stays quick

    run_daemon("analyzer", make_app, cfg, log_level)
