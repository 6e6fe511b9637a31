"""What a run of `logdist bench` is asked to do: its scenarios, front ends and sizes."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logdist.config import HealthConfig, setting

HEALTH_MAX_PROBES = HealthConfig().max_probes

FRONT_ENDS = ("logdist", "nginx", "haproxy")
ALL = ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m")
ANALYZER_KINDS = ("logdist", "foreign")
# What runs against foreign analyzers (d and e measure logdist's own), and by default.
FOREIGN_SCENARIOS = ("a", "b", "c", "f")
FOREIGN_DEFAULT = ("a", "c")


SCENARIOS_HELP = (
    "a 1-message packets; b 1-100 messages (share error); c NDJSON 100x10; "
    "d 20,000 emitters as fleets; e many analyzers; f (a) and (c) with the spool on; g OTLP"
    " into four otlp analyzers; h syslog; i (c) into analyzers with a store, and search"
    " latency; j (a) and (c) through a cluster (3 NATS servers, 2 replicas) beside (f);"
    " k (c) into analyzers of each converting format (records, elasticsearch, loki, otlp);"
    " l TLS on both sides: (a) beside nginx-TLS, (c) beside plain, handshakes/s;"
    " m 1,000 steady emitters beside a burst at 10x capped analyzers, fairness on and off."
)


@dataclass
class Options:
    scenarios: tuple[str, ...] = setting(
        ALL,
        f"Run only these (repeatable): {SCENARIOS_HELP}",
        decls=("--scenario", "-s"),
        show_default=False,
    )
    front_ends: tuple[str, ...] = setting(
        FRONT_ENDS,
        "Front ends to compare (repeatable): logdist, nginx, haproxy.",
        decls=("--only",),
        show_default=False,
    )
    seconds: float = setting(10.0, "Load seconds per run.", minimum=0.5)
    # Slices each front end's load is cut into for (a), (b), (c) and (f), taken in turn.
    rounds: int = setting(
        3,
        "Slices each front end's load in (a), (b), (c), (f) is cut into, taken in turn"
        " with the others' so that the machine's slow spells fall on all alike.",
        minimum=1,
    )
    connections: int = setting(64, "wrk connections (a, b, c, e, f).", minimum=1)
    emitters: int = setting(20_000, "Emitters in scenario d, one packet/s each.", minimum=1)
    fleets: int = setting(4, "Processes the emitters of scenario d run in.", minimum=1)
    fleet_batch: int = setting(
        100,
        "Scenario d: packets ready together that go in one request (1: a request"
        " each, as separate emitters would send them).",
        minimum=1,
        maximum=1000,
    )
    many: int = setting(10_000, "Registered analyzers in scenario e.", minimum=11)
    store_fill: int = setting(
        5_000_000, "Scenario i: messages written into the stores searched.", minimum=1000
    )
    # logdist's own analyzers, or foreign ones (plain aiohttp, format = "ndjson").
    analyzers: str = setting(
        "logdist",
        "logdist: logdist's own analyzers. foreign: plain aiohttp services that parse"
        ' every body with orjson, declared format = "ndjson" (scenarios a, b, c, f;'
        " a and c by default).",
        metavar="KIND",
    )
    json_path: Path = setting(
        Path("bench-results/bench.json"), "Where the figures are written.", decls=("--json",)
    )
    # Another logdist's Python (an earlier checkout's .venv/bin/python): its distributor is a
    # contender of (a) and (c) too, named logdist-base, to compare two versions in one run.
    baseline: str | None = setting(
        None,
        "Another logdist install's python (e.g. an earlier checkout's .venv/bin/python): its"
        " distributor runs (a) and (c) beside this one's, as logdist-base.",
        metavar="PYTHON",
    )
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fmt(self) -> str | None:
        return "ndjson" if self.analyzers == "foreign" else None


def missing_tools(opts: Options) -> list[str]:
    needed = []
    if {"a", "b", "c", "e", "f", "g", "j", "k", "l", "m"} & set(opts.scenarios):
        needed.append("wrk")
    if "j" in opts.scenarios and not shutil.which("nats-server", path="/usr/sbin:/usr/bin"):
        needed.append("nats-server")
    needed += [name for name in ("nginx", "haproxy") if name in opts.front_ends]
    return [tool for tool in needed if not shutil.which(tool)]
