"""`logdist emitter start`."""

from __future__ import annotations

import typer

from logdist.cli.common import LogLevelOption, config_errors, run_daemon
from logdist.cli.settings import NO_FLAGS, Settings, flags
from logdist.config import EmitterConfig

app = typer.Typer(
    help="Emitters: generate log packets and deliver them to the distributor.", no_args_is_help=True
)


@app.command()
@flags(EmitterConfig)
def start(settings: Settings = NO_FLAGS, log_level: LogLevelOption = "INFO") -> None:
    """Send packets in the seed's format to POST /log-packet; control API on --port."""
    with config_errors():
        cfg = settings.apply(EmitterConfig())
    from logdist.emitter.node import make_app  # here: `logdist --help` stays quick

    run_daemon("emitter", make_app, cfg, log_level)
