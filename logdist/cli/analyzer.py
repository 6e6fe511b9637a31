"""`logdist analyzer serve`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from logdist import config
from logdist.cli.common import HostOption, LogLevelOption, config_errors, opt, run_daemon
from logdist.config import AnalyzerConfig as C
from logdist.config import parse_duration

app = typer.Typer(
    help="Analyzers: receive packets, dedupe by packetId, count them, and with --store keep "
    "them searchable.",
    no_args_is_help=True,
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
    store: Annotated[
        Path | None,
        typer.Option(
            help="Keep every message acknowledged in a searchable store (SQLite + FTS5) in this "
            "directory; serves GET /search, /histogram and /context.",
            show_default=False,
        ),
    ] = None,
    store_max_bytes: Annotated[
        int | None,
        opt(C, "store_max_bytes", "Retention: delete the oldest segments past this many bytes."),
    ] = None,
    store_max_age: Annotated[
        str | None,
        typer.Option(
            help="Retention: delete segments older than this (seconds, or 30m, 12h, 7d).",
            show_default=False,
        ),
    ] = None,
    store_segment: Annotated[
        str | None,
        typer.Option(
            help="Start a new segment file this often (seconds, or 10m, 1h).  [default: 1h]",
            show_default=False,
        ),
    ] = None,
    store_sync: Annotated[
        str | None,
        opt(
            C,
            "store_sync",
            "full: each commit is fsynced before the 2xx; normal: it survives a crash of the "
            "process, not of the host.",
        ),
    ] = None,
    log_level: LogLevelOption = "INFO",
) -> None:
    """Serve POST /ingest (a packet, a JSON array or NDJSON), GET /health and GET /stats.

    With --store every packet is written to the store before it is acknowledged (deduped by
    packetId across restarts), and GET /search, /histogram and /context answer from it.
    """
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
            store=str(store) if store else None,
            store_max_bytes=store_max_bytes,
            store_max_age=parse_duration("--store-max-age", store_max_age)
            if store_max_age is not None
            else None,
            store_segment=parse_duration("--store-segment", store_segment)
            if store_segment is not None
            else None,
            store_sync=store_sync,
        )
    from logdist.analyzer import make_app  # here, not at the top: `logdist --help` stays quick

    run_daemon("analyzer", make_app, cfg, log_level)
