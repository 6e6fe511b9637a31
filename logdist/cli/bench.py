"""`logdist bench`: logdist beside nginx and HAProxy on the same work, in one run."""

from __future__ import annotations

import subprocess
from pathlib import Path

from logdist.bench.options import (
    ALL,
    ANALYZER_KINDS,
    FOREIGN_DEFAULT,
    FOREIGN_SCENARIOS,
    FRONT_ENDS,
    Options,
    missing_tools,
)
from logdist.cli.common import fail
from logdist.cli.settings import NO_FLAGS, Settings, flags


@flags(Options)
def bench(settings: Settings = NO_FLAGS) -> None:
    """Measure logdist beside nginx and HAProxy as weighted proxies to the same four analyzers.

    Needs wrk, nginx and haproxy on PATH (scripts/bench installs them from Debian). Prints one
    table and the performance targets; writes the figures as JSON.
    """
    opts = settings.apply(Options())
    if opts.analyzers not in ANALYZER_KINDS:
        raise fail(f"--analyzers must be logdist or foreign, got {opts.analyzers!r}", 2)
    foreign = opts.analyzers == "foreign"
    allowed = FOREIGN_SCENARIOS if foreign else ALL
    if foreign and not settings.gave("scenarios"):
        opts.scenarios = FOREIGN_DEFAULT
    if bad := sorted(set(opts.scenarios) - set(allowed)):
        kind = " with --analyzers foreign" if foreign else ""
        raise fail(f"unknown scenario {', '.join(bad)}{kind}; choose from {' '.join(allowed)}", 2)
    if bad := sorted(set(opts.front_ends) - set(FRONT_ENDS)):
        raise fail(f"unknown front end {', '.join(bad)}; choose from logdist, nginx, haproxy", 2)
    if missing := missing_tools(opts):
        raise fail(f"logdist bench needs {', '.join(missing)} (scripts/bench installs them)", 1)
    from logdist.bench import suite  # here: `logdist --help` need not load the bench

    try:
        suite.run(opts)
    except subprocess.CalledProcessError as exc:
        tool = Path(str(exc.cmd[0])).name
        detail = (exc.stderr or "").strip().splitlines()[-1:] if isinstance(exc.stderr, str) else []
        raise fail(f"bench: {tool} failed (exit {exc.returncode}) {' '.join(detail)}", 1) from None
    except RuntimeError as exc:
        raise fail(f"bench: {exc}", 1) from None
