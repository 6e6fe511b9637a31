"""What the command modules share: config errors as one line, running a daemon."""

from __future__ import annotations

import dataclasses
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
HostOption = Annotated[
    str | None, typer.Option(help="Address to listen on.", show_default="127.0.0.1")
]
LogLevelOption = Annotated[str, typer.Option(help="Log level: DEBUG, INFO, WARNING, ERROR.")]


def default(cls: type[Any], name: str) -> str:
    """The default of config field `name`, for --help: defaults are declared once, in config.py."""
    value = next(f.default for f in dataclasses.fields(cls) if f.name == name)
    if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    if isinstance(value, tuple) and len(value) == 2:
        return f"{value[0]}" if value[0] == value[1] else f"{value[0]}-{value[1]}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def opt(cls: type[Any], name: str, help: str, *decls: str, metavar: str | None = None) -> Any:
    """A flag overriding config field `name` of `cls`; None (not given) keeps the config's value."""
    return typer.Option(*decls, help=help, show_default=default(cls, name), metavar=metavar)


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
    from logdist.net import server  # aiohttp: loaded by the daemons, not by every command

    """Serve `make_app(cfg)` until a signal.

    A state or spool that cannot be used is exit code 2, a port that cannot be bound 1.
    """
    events.setup(level)
    with config_errors():
        app = make_app(cfg)
    try:
        server.run(server.serve(app, cfg.host, cfg.port, name))
    except server.ListenError as exc:
        raise fail(f"{name}: {exc.message}", 1) from None
    except KeyboardInterrupt:
        sys.exit(130)
