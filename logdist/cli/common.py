"""What the command modules share: config errors as one line, running a daemon."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from logdist import events
from logdist.config import Topology, load_topology
from logdist.errors import ConfigError

if TYPE_CHECKING:
    from aiohttp import web

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Topology TOML file (see configs/demo.toml).", show_default=False
    ),
]
LogLevelOption = Annotated[str, typer.Option(help="Log level: DEBUG, INFO, WARNING, ERROR.")]


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"logdist: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def config_errors() -> Iterator[None]:
    """A bad config file or flag value is one line on stderr and exit code 2."""
    try:
        yield
    except ConfigError as exc:
        raise fail(exc.message, 2) from None


def topology(path: Path | None) -> Topology:
    with config_errors():
        return load_topology(path) if path is not None else Topology()


def run_daemon(name: str, make_app: Callable[[Any], web.Application], cfg: Any, level: str) -> None:
    """Serve `make_app(cfg)` until a signal.

    A state or spool that cannot be used is exit code 2, a port that cannot be bound 1.
    """
    from logdist.net import server  # aiohttp: loaded by the daemons, not by every command

    events.setup(level)
    with config_errors():
        app = make_app(cfg)
    try:
        server.run(server.serve(app, cfg.host, cfg.port, name))
    except server.ListenError as exc:
        raise fail(f"{name}: {exc.message}", 1) from None
    except KeyboardInterrupt:
        sys.exit(130)
