"""One run of `logdist bench`: the analyzers started once, then each scenario asked for, its
contenders started and measured, every row recorded in `Options.rows`."""

from __future__ import annotations

import functools
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from logdist.bench import cluster, fairness, fleets, inputs, load, picker, proxies, secure, store
from logdist.bench.options import HEALTH_MAX_PROBES, Options
from logdist.bench.proxies import FrontEnd
from logdist.bench.scenarios import CONVERTING, SCENARIOS, WEIGHTS

# A contender: its scenario, how to start it, and what its row says besides its figures.
Contender = tuple[str, Callable[[], FrontEnd], dict[str, Any]]


class Runner:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.rows = opts.rows
        self.work = Path(tempfile.mkdtemp(prefix="logdist-bench-"))
        self.ports: dict[str, int] = {}
        self.pids: list[int] = []
        # Scenario (i)'s analyzers that keep a store: their ports and pids.
        self.storing: tuple[dict[str, int], list[int]] = ({}, [])
        # The analyzers of each other format, for (k) and (g): their ports and pids.
        self.sinks: dict[str, tuple[dict[str, int], list[int]]] = {}
        # (l)'s CA and TLS analyzers, while it runs.
        self.secure: secure.Secure | None = None
        self.starters: dict[str, Callable[[Path, dict[str, int]], FrontEnd]] = {
            "logdist": functools.partial(proxies.start_logdist, fmt=opts.fmt),
            "nginx": proxies.start_nginx,
            "haproxy": proxies.start_haproxy,
        }

    def run(self) -> None:
        opts = self.opts
        self.ports, analyzers = proxies.start_analyzers(opts.analyzers)
        self.pids = [p.pid for p in analyzers]
        storing_procs: list[Any] = []
        sink_procs: list[Any] = []
        try:
            if "i" in opts.scenarios:
                sports, storing_procs = proxies.start_analyzers(
                    "logdist", lambda aid: ["--store", str(self.work / "stores" / aid)]
                )
                self.storing = (sports, [p.pid for p in storing_procs])
            for fmt in self.sink_formats():
                fports, fprocs = proxies.start_analyzers(f"sink:{fmt}")
                sink_procs += fprocs
                self.sinks[fmt] = (fports, [p.pid for p in fprocs])
            for key in ("a", "b", "c"):
                contenders = self.contenders(key)
                if contenders:
                    self.interleaved(key, contenders)
                    shutil.rmtree(self.work / f"spool-{key}", ignore_errors=True)
            if "i" in opts.scenarios:
                self.stored(storing_procs)
                self.search()
            if "h" in opts.scenarios:
                self.syslog()
            if "d" in opts.scenarios:
                self.emitters()
            if "e" in opts.scenarios:
                self.many_analyzers()
            if "l" in opts.scenarios:
                secure.run(self)
            if "m" in opts.scenarios:
                fairness.run(self)
        finally:
            proxies.stop(analyzers)
            proxies.stop(storing_procs)
            proxies.stop(sink_procs)
            shutil.rmtree(self.work, ignore_errors=True)

    # -- measuring ------------------------------------------------------------------------

    def record(self, scenario: str, row: dict[str, Any], **extra: Any) -> None:
        row = {"scenario": scenario, **extra, **row}
        self.rows.append(row)
        print(
            f"  {scenario} {row['front_end']:<16} {row['messages_per_s']:>12,.0f} msg/s"
            f" {row['packets_per_s']:>10,.0f} pkt/s  p99 {row['p99_ms']} ms"
            f"  errors {row['errors']}",
            flush=True,
        )

    def one(self, scenario: str, front: FrontEnd, work: Any, **extra: Any) -> None:
        try:
            part = load.measure(front, self.ports, self.pids, work)
        finally:
            front.stop()
        self.record(scenario, load.summarize([part]), **extra)

    def wrk(self, key: str, fe: FrontEnd, seconds: float) -> Any:
        # Fresh packet ids every time: the analyzers count a repeated id once.
        work, connections = self.work, self.opts.connections
        lua = work / f"{fe.name}-{key}.lua"
        lua.write_text(SCENARIOS[key].lua(f"{fe.name}-{key}-{time.time_ns()}"))
        if fe.ports:  # a cluster: one wrk a replica, each with ids of its own
            luas = []
            for i in range(len(fe.ports)):
                luas.append(work / f"{fe.name}-{key}-{i}.lua")
                luas[-1].write_text(SCENARIOS[key].lua(f"{fe.name}-{key}-{i}-{time.time_ns()}"))
            return lambda: load.run_wrk_spread(fe.ports, seconds, connections, luas)
        return lambda: load.run_wrk(fe.port, seconds, connections, lua)

    def otlp(self, fe: FrontEnd, seconds: float) -> Any:
        # Fewer connections than (c): a request of 512 records is milliseconds of work, and a
        # collector or SDK sends over a few.
        lua = inputs.otlp_lua(self.work, f"{time.time_ns()}")
        return lambda: load.run_wrk(fe.port, seconds, inputs.OTLP_CONNECTIONS, lua)

    def interleaved(self, key: str, contenders: list[Contender]) -> None:
        """Each contender's load in `opts.rounds` slices, taken in turn with the others' (A B C
        A B C ...), so a slow spell of this shared machine weighs on all of them alike. A
        contender of scenario (g) is given OTLP requests, the others scenario `key`'s; one of
        scenario (i) delivers to the storing analyzers."""
        opts = self.opts
        fronts: list[FrontEnd] = []
        try:
            for _, start, _ in contenders:
                fronts.append(start())
            parts: list[list[dict[str, Any]]] = [[] for _ in fronts]
            for _ in range(opts.rounds):
                for (scenario, _, extra), fe, slices in zip(contenders, fronts, parts, strict=True):
                    maker = self.otlp if scenario == "g" else functools.partial(self.wrk, key)
                    work = maker(fe, opts.seconds / opts.rounds)
                    pool = self.pool(scenario, extra)
                    slices.append(load.measure(fe, *pool, work))
        finally:
            for fe in fronts:
                fe.stop()
        for (scenario, _, extra), slices in zip(contenders, parts, strict=True):
            self.record(scenario, load.summarize(slices), **extra)

    def pool(self, scenario: str, extra: dict[str, Any]) -> tuple[dict[str, int], list[int]]:
        """The analyzers a contender delivers to (their ports, where counts are read)."""
        if scenario == "i":
            return self.storing
        if extra.get("tls") and self.secure is not None:
            return self.secure.ports, self.secure.pids
        if "format" in extra:
            return self.sinks[extra["format"]]
        return self.ports, self.pids

    def sink_formats(self) -> list[str]:
        """The formats whose analyzers (k) and (g) need."""
        asked = set(self.opts.scenarios)
        return [*(CONVERTING if "k" in asked else ()), *(("otlp",) if "g" in asked else ())]

    # -- the scenarios --------------------------------------------------------------------

    def contenders(self, key: str) -> list[Contender]:
        """Who runs scenario `key`'s load ((a), (b) or (c)), and the scenarios measured beside
        it: (f) and (j) beside (a) and (c), (i) and (g) beside (c), the baseline's logdist."""
        opts, work, ports = self.opts, self.work, self.ports
        asked = set(opts.scenarios)
        out: list[Contender] = []
        if key in asked:
            out += [
                (key, functools.partial(self.starters[name], work, ports), {})
                for name in opts.front_ends
            ]
            if opts.baseline is not None and key in ("a", "c"):
                out.append((key, functools.partial(self.baseline), {"baseline": opts.baseline}))
        if {"f", "j"} & asked and key in ("a", "c"):
            out.append(("f", functools.partial(self.spooled, key), {"like": key}))
        if "j" in asked and key in ("a", "c"):
            clustered = functools.partial(cluster.start_cluster, work, ports, fmt=opts.fmt)
            out.append(("j", clustered, {"like": key}))
        if "i" in asked and key == "c":
            into_stores = functools.partial(proxies.start_logdist, work, self.storing[0])
            out.append(("i", into_stores, {"like": "c", "store": True}))
            if "c" not in asked:  # (i) is measured beside (c) without a store
                out.insert(0, ("c", functools.partial(self.starters["logdist"], work, ports), {}))
        if "k" in asked and key == "c":
            for fmt in CONVERTING:
                start = functools.partial(self.converting, fmt)
                out.append(("k", start, {"like": "c", "format": fmt}))
        if {"k", "g"} & asked and key == "c" and "c" not in asked:  # measured beside (c)
            out.insert(0, ("c", functools.partial(self.starters["logdist"], work, ports), {}))
        if "g" in asked and key == "c":
            otlp_front = functools.partial(self.converting, "otlp", "otlp-in")
            extra = {"records_per_request": inputs.RECORDS, "format": "otlp"}
            out.append(("g", otlp_front, extra))
        return out

    def converting(self, fmt: str, name: str | None = None) -> FrontEnd:
        """A distributor delivering to four analyzers of format `fmt`."""
        fe = proxies.start_logdist(self.work, self.sinks[fmt][0], fmt=fmt, health_path="/stats")
        fe.name = name or f"logdist>{fmt}"
        return fe

    def spooled(self, key: str) -> FrontEnd:
        spool = self.work / f"spool-{key}"
        fe = proxies.start_logdist(
            self.work, self.ports, "--spool-dir", str(spool), fmt=self.opts.fmt
        )
        fe.name = "logdist+spool"
        return fe

    def baseline(self) -> FrontEnd:
        assert self.opts.baseline is not None
        fe = proxies.start_logdist(
            self.work, self.ports, fmt=self.opts.fmt, python=self.opts.baseline
        )
        fe.name = "logdist-base"
        return fe

    def stored(self, storing_procs: list[Any]) -> None:
        """(i): every message delivered into the storing analyzers is in their stores."""
        sports = self.storing[0]
        counted = proxies.stats_total(sports)
        held = sum(proxies.analyzer_stats(port)["store"]["messages"] for port in sports.values())
        row = next(r for r in self.rows if r["scenario"] == "i")
        row["stored_messages"] = held
        row["counted_messages"] = sum(m for _, m in counted.values())
        proxies.stop(storing_procs)
        shutil.rmtree(self.work / "stores", ignore_errors=True)
        print(
            f"  i stores hold {held:,} messages; the analyzers counted {row['counted_messages']:,}",
            flush=True,
        )

    def search(self) -> None:
        """(i): stores filled with --store-fill messages, searched through a distributor."""
        dirs = {aid: self.work / "search" / aid for aid in WEIGHTS}
        filled = store.fill(dirs, self.opts.store_fill)
        print(
            f"  i filled {filled['messages']:,} messages in {filled['seconds']} s"
            f" ({filled['bytes_per_million'] / 1e6:.0f} MB a million)",
            flush=True,
        )
        fports, fprocs = proxies.start_analyzers("logdist", lambda aid: ["--store", str(dirs[aid])])
        try:
            fe = proxies.start_logdist(self.work, fports)
            try:
                timed = store.latency(fe.port)
            finally:
                fe.stop()
        finally:
            proxies.stop(fprocs)
            shutil.rmtree(self.work / "search", ignore_errors=True)
        self.rows.append({"scenario": "i", "front_end": "search", "fill": filled, **timed})
        print(
            f"  i search p95 {timed['search']['p95_ms']} ms, histogram p95"
            f" {timed['histogram']['p95_ms']} ms",
            flush=True,
        )

    def syslog(self) -> None:
        """(h): syslog over TCP connections."""
        port = proxies.free_port()
        fe = proxies.start_logdist(
            self.work, self.ports, "--syslog-tcp", str(port), fmt=self.opts.fmt
        )
        proxies.wait_port(port)
        work = functools.partial(inputs.run_syslog, port, self.opts.seconds)
        self.one("h", fe, work, connections=inputs.CONNECTIONS)

    def emitters(self) -> None:
        """(d): --emitters real emitters as --fleets fleets, through each front end."""
        opts = self.opts
        for name in opts.front_ends:
            fe = self.starters[name](self.work, self.ports)
            work = functools.partial(
                fleets.run,
                fe.port,
                opts.seconds,
                opts.emitters,
                opts.fleets,
                opts.fleet_batch,
                fe.name == "logdist",
                fe.pids(),
            )
            self.one("d", fe, work)

    def many_analyzers(self) -> None:
        """(e): the picker at --many analyzers; a distributor holding that many, idle, and
        (a) through it in turn with (a) through one holding the four."""
        opts, ports = self.opts, self.ports
        for measured in picker.measure_sizes((10, opts.many), 100_000):
            self.rows.append({"scenario": "e", "front_end": "picker", **measured})
        refs = [
            f"s{i}=http://127.0.0.1:{ports[aid]}/ingest?slot={i}@{WEIGHTS[aid]}"
            for i in range(opts.many)
            for aid in [list(WEIGHTS)[i % len(WEIGHTS)]]
        ]
        # Default health settings: the first round of probes takes many / budget seconds.
        started = time.monotonic()
        budget = opts.many / HEALTH_MAX_PROBES
        many = proxies.start_logdist(
            self.work, ports, analyzers=refs, healthy_within=2 * budget + 60
        )
        many.name = f"logdist {opts.many:,} an."
        idle = load.idle(many, min(10.0, max(2.0, opts.seconds)))
        idle["all_up_s"] = round(time.monotonic() - started, 1)

        def four() -> FrontEnd:
            fe = proxies.start_logdist(self.work, ports)
            fe.name = "logdist 4 an."
            return fe

        # (a) through each, in turn, as (a) itself is run.
        self.interleaved(
            "a",
            [
                ("e", lambda: many, {"analyzers": opts.many, "idle": idle}),
                ("e", four, {"analyzers": 4}),
            ],
        )
