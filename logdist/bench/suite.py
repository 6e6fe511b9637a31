"""`logdist bench`: logdist beside nginx and HAProxy on the same work, in one run.

Four logdist analyzers (weights 4:3:2:1) serve as the upstreams of each front end in turn:
logdist's distributor, nginx (one worker) and HAProxy (one thread), each configured as a
weighted proxy. Scenarios:

  a  one-message packets on /log-packet (wrk, --connections)
  b  packets of 1-100 messages on /log-packet: the message-share error of each front end
  c  NDJSON bodies of 100 packets x 10 messages on /log-packets
  d  --emitters real emitters at one packet a second each, run as --fleets fleets
     (`logdist emitter start --fleet`, --fleet-batch packets a request): registered and
     leased with logdist, while a dashboard's views are watched (logdist.bench.fleets)
  e  --many registered analyzers: the picker's cost beside 10 analyzers; a distributor
     holding that many (mapped onto the same four processes) at the default health settings,
     once its probe budget has seen them all up: its CPU idle, its /status, and scenario (a)
     through it in turn with (a) through a distributor holding the four
  f  scenarios (a) and (c) again with the durable spool on (fsync once a second)
  g  OTLP/HTTP protobuf requests of 512 records on /v1/logs (wrk, 16 connections), taken in
     turn with (c)
  h  syslog RFC 5424, octet-counted, over 8 TCP connections (logdist.bench.inputs)
  j  (a) and (c) through logdist's cluster mode — three nats-servers clustered on loopback
     (every stream message on all three) and two distributor replicas, the load spread over
     both (logdist.bench.cluster) — taken in turn with one distributor with its spool (f);
     the replicas' and the NATS servers' CPU measured apart
  i  (c) again into four analyzers that keep a store (--store), taken in turn with (c) into
     the four that do not, and afterwards every delivered message counted in the stores; then
     --store-fill messages written into four stores and searched through a distributor:
     the latency of a full-text + level + 24 h first page and of a whole-range histogram
     (logdist.bench.store)

With --analyzers foreign the four analyzers are plain aiohttp services instead
(logdist.bench.foreign, parsing every body with orjson), declared `format = "ndjson"` to
logdist, and nginx and HAProxy pass them the same bodies whole: scenarios (a), (b), (c), (f).

For (a), (b), (c) and (f) every front end is started at once and its load cut into --rounds
slices taken in turn with the others' (logdist, nginx, HAProxy, logdist+spool, then again),
so a slow spell of this shared machine weighs on all of them alike; a row sums its slices.
Delivered packets and messages are counted at the analyzers. Everything listens on 127.0.0.1
and every load is bounded by --seconds. Prints one table and the targets of the performance
issue; writes everything to --json.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logdist.bench import cluster, fleets, inputs, picker, proxies, store
from logdist.bench.proxies import SCENARIOS, WEIGHTS, FrontEnd
from logdist.config import HealthConfig

HEALTH_MAX_PROBES = HealthConfig().max_probes

FRONT_ENDS = ("logdist", "nginx", "haproxy")
ALL = ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j")
ANALYZER_KINDS = ("logdist", "foreign")
# What runs against foreign analyzers (d and e measure logdist's own), and by default.
FOREIGN_SCENARIOS = ("a", "b", "c", "f")
FOREIGN_DEFAULT = ("a", "c")


@dataclass
class Options:
    scenarios: tuple[str, ...] = ALL
    front_ends: tuple[str, ...] = FRONT_ENDS
    seconds: float = 10.0
    connections: int = 64
    emitters: int = 20_000
    fleets: int = 4
    fleet_batch: int = 100
    many: int = 10_000
    # Messages written into four stores before scenario (i) times searches over them.
    store_fill: int = 5_000_000
    json_path: Path = Path("bench-results/bench.json")
    # Slices each front end's load is cut into for (a), (b), (c) and (f), taken in turn.
    rounds: int = 3
    # logdist's own analyzers, or foreign ones (plain aiohttp, format = "ndjson").
    analyzers: str = "logdist"
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fmt(self) -> str | None:
        return "ndjson" if self.analyzers == "foreign" else None


def missing_tools(opts: Options) -> list[str]:
    needed = []
    if {"a", "b", "c", "e", "f", "g", "j"} & set(opts.scenarios):
        needed.append("wrk")
    if "j" in opts.scenarios and not shutil.which("nats-server", path="/usr/sbin:/usr/bin"):
        needed.append("nats-server")
    needed += [name for name in ("nginx", "haproxy") if name in opts.front_ends]
    return [tool for tool in needed if not shutil.which(tool)]


def run(opts: Options) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="logdist-bench-"))
    ports, analyzers = proxies.start_analyzers(opts.analyzers)
    pids = [p.pid for p in analyzers]
    starters: dict[str, Callable[[Path, dict[str, int]], FrontEnd]] = {
        "logdist": functools.partial(proxies.start_logdist, fmt=opts.fmt),
        "nginx": proxies.start_nginx,
        "haproxy": proxies.start_haproxy,
    }
    rows = opts.rows

    def record(scenario: str, row: dict[str, Any], **extra: Any) -> None:
        row = {"scenario": scenario, **extra, **row}
        rows.append(row)
        print(
            f"  {scenario} {row['front_end']:<16} {row['messages_per_s']:>12,.0f} msg/s"
            f" {row['packets_per_s']:>10,.0f} pkt/s  p99 {row['p99_ms']} ms"
            f"  errors {row['errors']}",
            flush=True,
        )

    def one(scenario: str, front: FrontEnd, load: Any, **extra: Any) -> None:
        try:
            part = proxies.measure(front, ports, pids, load)
        finally:
            front.stop()
        record(scenario, proxies.summarize([part]), **extra)

    def wrk(key: str, fe: FrontEnd, seconds: float) -> Any:
        # Fresh packet ids every time: the analyzers count a repeated id once.
        lua = work / f"{fe.name}-{key}.lua"
        lua.write_text(SCENARIOS[key].lua(f"{fe.name}-{key}-{time.time_ns()}"))
        if fe.ports:  # a cluster: one wrk a replica, each with ids of its own
            luas = []
            for i in range(len(fe.ports)):
                luas.append(work / f"{fe.name}-{key}-{i}.lua")
                luas[-1].write_text(SCENARIOS[key].lua(f"{fe.name}-{key}-{i}-{time.time_ns()}"))
            return lambda: proxies.run_wrk_spread(fe.ports, seconds, opts.connections, luas)
        return lambda: proxies.run_wrk(fe.port, seconds, opts.connections, lua)

    def spooled(key: str) -> FrontEnd:
        spool = work / f"spool-{key}"
        fe = proxies.start_logdist(work, ports, "--spool-dir", str(spool), fmt=opts.fmt)
        fe.name = "logdist+spool"
        return fe

    def otlp(fe: FrontEnd, seconds: float) -> Any:
        # Fewer connections than (c): a request of 512 records is milliseconds of work, and a
        # collector or SDK sends over a few.
        lua = inputs.otlp_lua(work, f"{time.time_ns()}")
        return lambda: proxies.run_wrk(fe.port, seconds, inputs.OTLP_CONNECTIONS, lua)

    def interleaved(key: str, contenders: list[tuple[str, Callable[[], FrontEnd], Any]]) -> None:
        """Each contender's load in `opts.rounds` slices, taken in turn with the others' (A B C
        A B C ...), so a slow spell of this shared machine weighs on all of them alike. A
        contender of scenario (g) is given OTLP requests, the others scenario `key`'s; one of
        scenario (i) delivers to the storing analyzers."""
        fronts: list[FrontEnd] = []
        try:
            for _, start, _ in contenders:
                fronts.append(start())
            parts: list[list[dict[str, Any]]] = [[] for _ in fronts]
            for _ in range(opts.rounds):
                for (scenario, _, _), fe, slices in zip(contenders, fronts, parts, strict=True):
                    maker = otlp if scenario == "g" else functools.partial(wrk, key)
                    load = maker(fe, opts.seconds / opts.rounds)
                    pool = storing if scenario == "i" else (ports, pids)
                    slices.append(proxies.measure(fe, *pool, load))
        finally:
            for fe in fronts:
                fe.stop()
        for (scenario, _, extra), slices in zip(contenders, parts, strict=True):
            record(scenario, proxies.summarize(slices), **extra)

    storing: tuple[dict[str, int], list[int]] = ({}, [])
    storing_procs: list[Any] = []
    try:
        if "i" in opts.scenarios:
            sports, storing_procs = proxies.start_analyzers(
                "logdist", lambda aid: ["--store", str(work / "stores" / aid)]
            )
            storing = (sports, [p.pid for p in storing_procs])
        for key in ("a", "b", "c"):
            contenders: list[tuple[str, Callable[[], FrontEnd], Any]] = []
            if key in opts.scenarios:
                contenders += [
                    (key, functools.partial(starters[name], work, ports), {})
                    for name in opts.front_ends
                ]
            if {"f", "j"} & set(opts.scenarios) and key in ("a", "c"):
                contenders.append(("f", functools.partial(spooled, key), {"like": key}))
            if "j" in opts.scenarios and key in ("a", "c"):
                clustered = functools.partial(cluster.start_cluster, work, ports, fmt=opts.fmt)
                contenders.append(("j", clustered, {"like": key}))
            if "i" in opts.scenarios and key == "c":
                into_stores = functools.partial(proxies.start_logdist, work, storing[0])
                contenders.append(("i", into_stores, {"like": "c", "store": True}))
                if "c" not in opts.scenarios:  # (i) is measured beside (c) without a store
                    contenders.insert(
                        0, ("c", functools.partial(starters["logdist"], work, ports), {})
                    )
            if "g" in opts.scenarios and key == "c":
                otlp_front = functools.partial(proxies.start_logdist, work, ports, fmt=opts.fmt)
                contenders.append(("g", otlp_front, {"records_per_request": inputs.RECORDS}))
            if contenders:
                interleaved(key, contenders)
                shutil.rmtree(work / f"spool-{key}", ignore_errors=True)
        if "i" in opts.scenarios:
            counted = proxies.stats_total(storing[0])
            held = sum(
                proxies.analyzer_stats(port)["store"]["messages"] for port in storing[0].values()
            )
            row = next(r for r in rows if r["scenario"] == "i")
            row["stored_messages"] = held
            row["counted_messages"] = sum(m for _, m in counted.values())
            proxies.stop(storing_procs)
            shutil.rmtree(work / "stores", ignore_errors=True)
            print(
                f"  i stores hold {held:,} messages; the analyzers counted"
                f" {row['counted_messages']:,}",
                flush=True,
            )
            dirs = {aid: work / "search" / aid for aid in WEIGHTS}
            filled = store.fill(dirs, opts.store_fill)
            print(
                f"  i filled {filled['messages']:,} messages in {filled['seconds']} s"
                f" ({filled['bytes_per_million'] / 1e6:.0f} MB a million)",
                flush=True,
            )
            fports, fprocs = proxies.start_analyzers(
                "logdist", lambda aid: ["--store", str(dirs[aid])]
            )
            try:
                fe = proxies.start_logdist(work, fports)
                try:
                    timed = store.latency(fe.port)
                finally:
                    fe.stop()
            finally:
                proxies.stop(fprocs)
                shutil.rmtree(work / "search", ignore_errors=True)
            rows.append({"scenario": "i", "front_end": "search", "fill": filled, **timed})
            print(
                f"  i search p95 {timed['search']['p95_ms']} ms, histogram p95"
                f" {timed['histogram']['p95_ms']} ms",
                flush=True,
            )
        if "h" in opts.scenarios:
            syslog_port = proxies.free_port()
            fe = proxies.start_logdist(work, ports, "--syslog-tcp", str(syslog_port), fmt=opts.fmt)
            proxies.wait_port(syslog_port)
            load = functools.partial(inputs.run_syslog, syslog_port, opts.seconds)
            one("h", fe, load, connections=inputs.CONNECTIONS)
        if "d" in opts.scenarios:
            for name in opts.front_ends:
                fe = starters[name](work, ports)
                load = functools.partial(
                    fleets.run,
                    fe.port,
                    opts.seconds,
                    opts.emitters,
                    opts.fleets,
                    opts.fleet_batch,
                    fe.name == "logdist",
                    fe.pids(),
                )
                one("d", fe, load)
        if "e" in opts.scenarios:
            for measured in picker.measure_sizes((10, opts.many), 100_000):
                rows.append({"scenario": "e", "front_end": "picker", **measured})
            refs = [
                f"s{i}=http://127.0.0.1:{ports[aid]}/ingest?slot={i}@{WEIGHTS[aid]}"
                for i in range(opts.many)
                for aid in [list(WEIGHTS)[i % len(WEIGHTS)]]
            ]
            # Default health settings: the first round of probes takes many / budget seconds.
            started = time.monotonic()
            budget = opts.many / HEALTH_MAX_PROBES
            many = proxies.start_logdist(
                work, ports, analyzers=refs, healthy_within=2 * budget + 60
            )
            many.name = f"logdist {opts.many:,} an."
            idle = proxies.idle(many, min(10.0, max(2.0, opts.seconds)))
            idle["all_up_s"] = round(time.monotonic() - started, 1)

            def four() -> FrontEnd:
                fe = proxies.start_logdist(work, ports)
                fe.name = "logdist 4 an."
                return fe

            # (a) through each, in turn, as (a) itself is run.
            interleaved(
                "a",
                [
                    ("e", lambda: many, {"analyzers": opts.many, "idle": idle}),
                    ("e", four, {"analyzers": 4}),
                ],
            )
    finally:
        proxies.stop(analyzers)
        proxies.stop(storing_procs)
        shutil.rmtree(work, ignore_errors=True)
    return report(opts)


def row(rows: list[dict[str, Any]], scenario: str, front: str, **match: Any) -> dict[str, Any]:
    for r in rows:
        same = r["scenario"] == scenario and r["front_end"].startswith(front)
        if same and all(r.get(k) == v for k, v in match.items()):
            return r
    return {}


def targets(rows: list[dict[str, Any]], analyzers: str = "logdist") -> list[dict[str, Any]]:
    """The performance issues' targets, each with the figures it was judged on."""
    out = []

    def add(name: str, goal: str, value: float | None, met: bool | None) -> None:
        out.append({"target": name, "goal": goal, "value": value, "met": met})

    def ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
        return round(a[key] / b[key], 3) if a and b and b[key] else None

    la, na = row(rows, "a", "logdist"), row(rows, "a", "nginx")
    r = ratio(la, na, "packets_per_s")
    add("(a) delivered packets/s, logdist / nginx", ">= 1.25", r, None if r is None else r >= 1.25)
    if analyzers == "foreign":
        lc, nc = row(rows, "c", "logdist"), row(rows, "c", "nginx")
        r = ratio(lc, nc, "messages_per_s")
        add("(c) delivered messages/s, logdist / nginx", ">= 1.0", r, None if r is None else r >= 1)
        for key, found in (("a", la), ("c", lc)):
            if found:
                err = found["share_error_points"]
                add(f"({key}) message-share error, points", "<= 1", err, err <= 1)
        return out
    lb, nb = row(rows, "b", "logdist"), row(rows, "b", "nginx")
    if lb:
        err = lb["share_error_points"]
        nginx = f" (nginx {nb['share_error_points']})" if nb else ""
        add(f"(b) message-share error, points{nginx}", "<= 1", err, err <= 1)
    lc = row(rows, "c", "logdist")
    if lc:
        add("(c) messages/s", ">= 1,000,000", lc["messages_per_s"], lc["messages_per_s"] >= 1e6)
    ld = row(rows, "d", "logdist")
    if ld:
        load = ld["load"]
        ok = ld["p99_ms"] <= 50 and ld["errors"] == 0
        n = f"{load['emitters']:,} emitters"
        add(f"(d) p99 ms with zero errors, {n}", "<= 50, 0 errors", ld["p99_ms"], ok)
        cpu = load["control_plane_pct"]
        cost = cpu["total"]
        add("(d) control plane, % of a core", "<= 5", cost, cost <= 5)
        # The per-packet count by emitter is ingest work; with it, the figure still holds?
        both = round(cost + cpu["tally"], 2)
        add("(d) control plane + per-packet tally, % of a core", "<= 5", both, both <= 5)
        kb = round(max(load["status_bytes"], load["ws_frame_bytes"]) / 1024, 1)
        add("(d) /status and a /ws/metrics frame, KB", "<= 16", kb, kb <= 16)
    # (e): the distributor holding many analyzers (its row has the idle figures), and four.
    le = next((r for r in rows if r["scenario"] == "e" and "idle" in r), {})
    l4 = row(rows, "e", "logdist 4 an.")
    if le and l4:
        n = f"{le['analyzers']:,}"
        r = ratio(le, l4, "packets_per_s")
        add(f"(e) (a) through {n} analyzers / through 4", ">= 0.8", r, r is not None and r >= 0.8)
        cpu = le["idle"]["cpu_pct"]
        add(f"(e) idle CPU with {n} analyzers, % of a core", "<= 5", cpu, cpu <= 5)
        kb = round(le["idle"]["status_bytes"] / 1024, 1)
        add(f"(e) /status with {n} analyzers, KB", "<= 16", kb, kb <= 16)
    picks = sorted((r for r in rows if r["front_end"] == "picker"), key=lambda r: r["analyzers"])
    if len(picks) >= 2:
        small, large = picks[0], picks[-1]
        r = round(large["registry_assign_us"] / small["registry_assign_us"], 2)
        name = f"(e) pick cost, {large['analyzers']:,} / {small['analyzers']} analyzers"
        add(name, "<= 2", r, r <= 2)
    lg = row(rows, "g", "logdist")
    if lg:
        r = ratio(lg, lc, "messages_per_s")
        add("(g) OTLP records/s / (c) messages/s", ">= 0.5", r, r is not None and r >= 0.5)
        err = lg["share_error_points"]
        add("(g) message-share error, points", "<= 1", err, err <= 1)
    lh = row(rows, "h", "logdist")
    if lh:
        rate = lh["messages_per_s"]
        add("(h) syslog messages/s, 8 TCP connections", ">= 150,000", rate, rate >= 150_000)
        err = lh["share_error_points"]
        add("(h) message-share error, points", "<= 1", err, err <= 1)
    li = row(rows, "i", "logdist")
    if li:
        r = ratio(li, lc, "messages_per_s")
        add("(i) (c) into stores / (c), messages/s", ">= 0.25", r, r is not None and r >= 0.25)
        ok = li["stored_messages"] == li["counted_messages"]
        add("(i) delivered messages found in the stores", "all", li["stored_messages"], ok)
    search = row(rows, "i", "search")
    if search:
        n = f"{search['fill']['messages'] / 1e6:.1f} M"
        p95 = search["search"]["p95_ms"]
        add(f"(i) search p95 ms, text+level+24 h, {n} stored", "<= 200", p95, p95 <= 200)
        p95 = search["histogram"]["p95_ms"]
        add(f"(i) histogram p95 ms, whole range, {n}", "<= 500", p95, p95 <= 500)
    for key in ("a", "c"):
        spooled = row(rows, "f", "logdist+spool", like=key)
        clustered = row(rows, "j", "logdist cluster", like=key)
        r = ratio(clustered, spooled, "messages_per_s")
        if r is not None:
            goal, met = (">= 0.5", r >= 0.5) if key == "c" else ("report", None)
            add(f"(j) cluster / one distributor with its spool, ({key})", goal, r, met)
    for key in ("a", "c"):
        spooled, plain = row(rows, "f", "logdist+spool", like=key), row(rows, key, "logdist")
        r = ratio(spooled, plain, "messages_per_s")
        if r is not None:
            add(f"(f) spool cost on ({key}), throughput kept", ">= 0.75", r, r >= 0.75)
    return out


def report(opts: Options) -> dict[str, Any]:
    rows = opts.rows
    rows.sort(key=lambda r: str(r["scenario"]))  # (f) ran beside (a) and (c): list it last
    for r in rows:
        base = row(rows, r["scenario"], "nginx") if r["scenario"] in "abcd" else {}
        if base and "messages_per_s" in r and base["messages_per_s"]:
            r["vs_nginx"] = round(r["messages_per_s"] / base["messages_per_s"], 2)
    result = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
        },
        "seconds": opts.seconds,
        "rounds": opts.rounds,
        "connections": opts.connections,
        "emitters": opts.emitters,
        "fleets": opts.fleets,
        "fleet_batch": opts.fleet_batch,
        "analyzers": opts.analyzers,
        "rows": rows,
        "targets": targets(rows, opts.analyzers),
    }
    print_table(result)
    opts.json_path.parent.mkdir(parents=True, exist_ok=True)
    opts.json_path.write_text(json.dumps(result, indent=2))
    print(f"wrote {opts.json_path}")
    return result


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


COLUMNS = (
    ("scenario", "sc", 2),
    ("front_end", "front end", 18),
    ("packets_per_s", "packets/s", 10),
    ("messages_per_s", "messages/s", 11),
    ("p50_ms", "p50 ms", 7),
    ("p99_ms", "p99 ms", 8),
    ("errors", "errors", 6),
    ("cpu_front_end", "cpu fe%", 7),
    ("cpu_analyzers", "cpu an%", 7),
    ("cpu_load", "cpu load%", 9),
    ("share_error_points", "share err", 9),
    ("vs_nginx", "vs nginx", 8),
)


def print_table(result: dict[str, Any]) -> None:
    m = result["machine"]
    print(
        f"\n{m['cpus']} CPUs ({m['cpu_model']}), {m['platform']}, Python {m['python']};"
        f" {result['seconds']:g} s a run (a, b, c, f in {result['rounds']} slices taken in"
        f" turn), wrk {result['connections']} connections,"
        f" 4 {result['analyzers']} analyzers 4:3:2:1"
        + (' (format = "ndjson")' if result["analyzers"] == "foreign" else "")
    )
    print(" ".join(f"{title:>{width}}" for _, title, width in COLUMNS))
    for r in result["rows"]:
        if r["front_end"] in ("picker", "search"):
            continue
        cells = []
        for key, _, width in COLUMNS:
            value = r.get(key, "")
            text = f"{value:,.0f}" if key.endswith("_per_s") else f"{value}"
            if key == "vs_nginx" and value != "":
                text = f"{value:.2f}x"
            cells.append(f"{text:>{width}}")
        print(" ".join(cells))
    picks = [r for r in result["rows"] if r["front_end"] == "picker"]
    for r in picks:
        print(
            f"  (e) picker, {r['analyzers']:>6,} analyzers ({r['form']}): "
            f"{r['registry_assign_us']:.2f} µs an assignment"
        )
    print("\ntargets")
    width = max((len(t["target"]) for t in result["targets"]), default=0)
    for t in result["targets"]:
        verdict = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        print(f"  {t['target']:<{width}} {t['goal']:>16}  {t['value']!s:>10}  {verdict}")
