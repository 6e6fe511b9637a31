"""`logdist distributor serve`."""

from __future__ import annotations

import typer

from logdist.cli.common import ConfigOption, LogLevelOption, config_errors, run_daemon, topology
from logdist.cli.settings import NO_FLAGS, Settings, flags
from logdist.config import DistributorConfig

app = typer.Typer(
    help="The distributor: accepts packets and routes them to analyzers by weight.",
    no_args_is_help=True,
)


@app.command()
@flags(DistributorConfig)
def serve(
    config_file: ConfigOption = None,
    settings: Settings = NO_FLAGS,
    log_level: LogLevelOption = "INFO",
) -> None:
    """Accept packets on POST /log-packet and /log-packets and forward them by weight."""
    cfg = topology(config_file).distributor
    with config_errors():
        cfg = settings.apply(cfg)
    from logdist.distributor.web.app import make_app  # here: `logdist --help` stays quick

    run_daemon("distributor", make_app, cfg, log_level)
