"""`logdist distributor serve`."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from logdist import config
from logdist.cli.common import (
    ConfigOption,
    HostOption,
    LogLevelOption,
    config_errors,
    run_daemon,
    topology,
)
from logdist.distributor import make_app

app = typer.Typer(
    help="The distributor: accepts packets and routes them to analyzers by weight.",
    no_args_is_help=True,
)


@app.command()
def serve(
    config_file: ConfigOption = None,
    analyzer: Annotated[
        list[str] | None,
        typer.Option(
            "--analyzer",
            "-a",
            help="ID=URL[@WEIGHT], repeatable; replaces the config file's analyzers.",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (0 = any free port).", show_default="8000")
    ] = None,
    host: HostOption = None,
    queue_capacity: Annotated[
        int | None,
        typer.Option(help="Packets held before ingest answers 503.", show_default="10000"),
    ] = None,
    max_pending: Annotated[
        int | None,
        typer.Option(
            help="Packets per analyzer sent or waiting, not yet acknowledged.", show_default="2048"
        ),
    ] = None,
    max_requests: Annotated[
        int | None,
        typer.Option(help="Concurrent forwarding requests per analyzer.", show_default="8"),
    ] = None,
    forward_batch: Annotated[
        int | None,
        typer.Option(help="Packets per POST to analyzers that accept batches.", show_default="256"),
    ] = None,
    forward_timeout: Annotated[
        float | None,
        typer.Option(help="Seconds before a forward counts as failed.", show_default="5"),
    ] = None,
    drain_timeout: Annotated[
        float | None,
        typer.Option(help="Seconds to deliver what is queued on shutdown.", show_default="10"),
    ] = None,
    health_interval: Annotated[
        float | None, typer.Option(help="Seconds between health probes.", show_default="1")
    ] = None,
    health_timeout: Annotated[
        float | None, typer.Option(help="Seconds before a probe fails.", show_default="1")
    ] = None,
    rise: Annotated[
        int | None,
        typer.Option(help="Consecutive successes that bring an analyzer up.", show_default="2"),
    ] = None,
    fall: Annotated[
        int | None,
        typer.Option(help="Consecutive failures that mark an analyzer down.", show_default="3"),
    ] = None,
    log_level: LogLevelOption = "INFO",
) -> None:
    """Accept packets on POST /log-packet and /log-packets and forward them by weight."""
    cfg = topology(config_file).distributor
    with config_errors():
        health = config.apply(
            cfg.health, interval=health_interval, timeout=health_timeout, rise=rise, fall=fall
        )
        refs = tuple(config.parse_analyzer_ref(a) for a in analyzer) if analyzer else None
        cfg = config.apply(
            cfg,
            port=port,
            host=host,
            analyzers=refs,
            queue_capacity=queue_capacity,
            max_pending=max_pending,
            max_requests=max_requests,
            forward_batch=forward_batch,
            forward_timeout=forward_timeout,
            drain_timeout=drain_timeout,
        )
        cfg = dataclasses.replace(cfg, health=health)
    run_daemon("distributor", make_app, cfg, log_level)
