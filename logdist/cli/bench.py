"""`logdist bench`: logdist beside nginx and HAProxy on the same work, in one run."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Annotated

import typer

from logdist.cli.common import fail

SCENARIOS = (
    "a 1-message packets; b 1-100 messages (share error); c NDJSON 100x10; "
    "d 20,000 emitters as fleets; e many analyzers; f (a) and (c) with the spool on; g OTLP;"
    " h syslog; i (c) into analyzers with a store, and search latency; j (a) and (c) through"
    " a cluster (3 NATS servers, 2 replicas) beside (f)."
)


def bench(
    scenario: Annotated[
        list[str] | None,
        typer.Option("--scenario", "-s", help=f"Run only these (repeatable): {SCENARIOS}"),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Front ends to compare (repeatable): logdist, nginx, haproxy."),
    ] = None,
    seconds: Annotated[float, typer.Option(help="Load seconds per run.", min=0.5)] = 10.0,
    rounds: Annotated[
        int,
        typer.Option(
            help="Slices each front end's load in (a), (b), (c), (f) is cut into, taken in turn"
            " with the others' so that the machine's slow spells fall on all alike.",
            min=1,
        ),
    ] = 3,
    connections: Annotated[int, typer.Option(help="wrk connections (a, b, c, e, f).", min=1)] = 64,
    emitters: Annotated[
        int, typer.Option(help="Emitters in scenario d, one packet/s each.", min=1)
    ] = 20_000,
    fleets: Annotated[
        int, typer.Option(help="Processes the emitters of scenario d run in.", min=1)
    ] = 4,
    fleet_batch: Annotated[
        int,
        typer.Option(
            help="Scenario d: packets ready together that go in one request (1: a request"
            " each, as separate emitters would send them).",
            min=1,
            max=1000,
        ),
    ] = 100,
    many: Annotated[int, typer.Option(help="Registered analyzers in scenario e.", min=11)] = 10_000,
    store_fill: Annotated[
        int,
        typer.Option(help="Scenario i: messages written into the stores searched.", min=1000),
    ] = 5_000_000,
    analyzers: Annotated[
        str,
        typer.Option(
            "--analyzers",
            metavar="KIND",
            help="logdist: logdist's own analyzers. foreign: plain aiohttp services that parse"
            ' every body with orjson, declared format = "ndjson" (scenarios a, b, c, f;'
            " a and c by default).",
        ),
    ] = "logdist",
    json_path: Annotated[
        Path, typer.Option("--json", help="Where the figures are written.")
    ] = Path("bench-results/bench.json"),
) -> None:
    """Measure logdist beside nginx and HAProxy as weighted proxies to the same four analyzers.

    Needs wrk, nginx and haproxy on PATH (scripts/bench installs them from Debian). Prints one
    table and the performance targets; writes the figures as JSON.
    """
    from logdist.bench import suite  # here: `logdist --help` need not load the bench

    if analyzers not in suite.ANALYZER_KINDS:
        raise fail(f"--analyzers must be logdist or foreign, got {analyzers!r}", 2)
    foreign = analyzers == "foreign"
    allowed = suite.FOREIGN_SCENARIOS if foreign else suite.ALL
    scenarios = tuple(scenario or (suite.FOREIGN_DEFAULT if foreign else suite.ALL))
    fronts = tuple(only or suite.FRONT_ENDS)
    if bad := sorted(set(scenarios) - set(allowed)):
        kind = " with --analyzers foreign" if foreign else ""
        raise fail(f"unknown scenario {', '.join(bad)}{kind}; choose from {' '.join(allowed)}", 2)
    if bad := sorted(set(fronts) - set(suite.FRONT_ENDS)):
        raise fail(f"unknown front end {', '.join(bad)}; choose from logdist, nginx, haproxy", 2)
    opts = suite.Options(
        scenarios=scenarios,
        front_ends=fronts,
        seconds=seconds,
        rounds=rounds,
        connections=connections,
        emitters=emitters,
        fleets=fleets,
        fleet_batch=fleet_batch,
        many=many,
        store_fill=store_fill,
        json_path=json_path,
        analyzers=analyzers,
    )
    if missing := suite.missing_tools(opts):
        raise fail(f"logdist bench needs {', '.join(missing)} (scripts/bench installs them)", 1)
    try:
        suite.run(opts)
    except subprocess.CalledProcessError as exc:
        tool = Path(str(exc.cmd[0])).name
        detail = (exc.stderr or "").strip().splitlines()[-1:] if isinstance(exc.stderr, str) else []
        raise fail(f"bench: {tool} failed (exit {exc.returncode}) {' '.join(detail)}", 1) from None
    except RuntimeError as exc:
        raise fail(f"bench: {exc}", 1) from None
