"""`logdist up`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from logdist.cli.common import topology
from logdist.config import DEFAULT_CONFIG
from logdist.supervisor import run_topology


def banner(url: str, analyzers: list[str], emitters: list[str]) -> str:
    e = emitters[0] if emitters else "e1"
    return "\n".join(
        [
            f"logdist is up: distributor {url}, analyzers {', '.join(analyzers) or '-'},"
            f" emitters {', '.join(emitters) or '-'}",
            f"  status:   curl -s {url}/status",
            f"  registry: curl -s {url}/registry",
            f"  pause:    curl -s -XPOST {url}/emitter/{e}/pause",
            "Ctrl-C stops everything.",
        ]
    )


def up(
    config_file: Annotated[
        Path, typer.Argument(help="Topology TOML file.", metavar="[CONFIG]")
    ] = DEFAULT_CONFIG,
) -> None:
    """Run a whole local topology (analyzers, distributor, emitters); Ctrl-C stops all."""
    topo = topology(config_file)
    d = topo.distributor
    text = banner(
        f"http://{d.host}:{d.port}", [a.id for a in topo.analyzers], [e.id for e in topo.emitters]
    )
    raise typer.Exit(asyncio.run(run_topology(topo, config_file, text)))
