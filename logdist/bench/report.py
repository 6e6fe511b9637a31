"""What `logdist bench` prints and writes: one table, the performance targets each judged on
its figures, and the JSON of every row."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from logdist.bench.options import Options


def row(rows: list[dict[str, Any]], scenario: str, front: str, **match: Any) -> dict[str, Any]:
    """The row of `scenario` whose front end is `front`, else the first whose name begins with
    it ("logdist cluster" finds "logdist cluster (2 replicas)"); {} if none."""
    found = [r for r in rows if r["scenario"] == scenario and r["front_end"].startswith(front)]
    found = [r for r in found if all(r.get(k) == v for k, v in match.items())]
    exact = [r for r in found if r["front_end"] == front]
    return (exact or found or [{}])[0]


def ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    return round(a[key] / b[key], 3) if a and b and b[key] else None


def us_per_message(found: dict[str, Any]) -> float | None:
    """The front end's CPU (its processes and their children) a delivered message, in µs."""
    rate = found.get("messages_per_s")
    if not rate:
        return None
    return round(float(found["cpu_front_end"]) / 100 * 1e6 / float(rate), 2)


class Targets:
    """The performance issues' targets, each with the figures it was judged on."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.out: list[dict[str, Any]] = []

    def add(self, name: str, goal: str, value: float | None, met: bool | None) -> None:
        self.out.append({"target": name, "goal": goal, "value": value, "met": met})

    def share(self, key: str, found: dict[str, Any], name: str | None = None) -> None:
        err = found["share_error_points"]
        self.add(name or f"({key}) message-share error, points", "<= 1", err, err <= 1)

    def foreign(self) -> None:
        la, lc = row(self.rows, "a", "logdist"), row(self.rows, "c", "logdist")
        r = ratio(lc, row(self.rows, "c", "nginx"), "messages_per_s")
        self.add(
            "(c) delivered messages/s, logdist / nginx", ">= 1.0", r, None if r is None else r >= 1
        )
        for key, found in (("a", la), ("c", lc)):
            if found:
                self.share(key, found)

    def a(self) -> None:
        r = ratio(row(self.rows, "a", "logdist"), row(self.rows, "a", "nginx"), "packets_per_s")
        self.add(
            "(a) delivered packets/s, logdist / nginx",
            ">= 1.25",
            r,
            None if r is None else r >= 1.25,
        )

    def baseline(self) -> None:
        for key in ("a", "c"):
            r = ratio(
                row(self.rows, key, "logdist"),
                row(self.rows, key, "logdist-base"),
                "messages_per_s",
            )
            if r is not None:
                self.add(f"({key}) this logdist / the baseline's, messages/s", "report", r, None)

    def b_c(self) -> None:
        lb, nb = row(self.rows, "b", "logdist"), row(self.rows, "b", "nginx")
        if lb:
            nginx = f" (nginx {nb['share_error_points']})" if nb else ""
            self.share("b", lb, f"(b) message-share error, points{nginx}")
        lc = row(self.rows, "c", "logdist")
        if lc:
            rate = lc["messages_per_s"]
            self.add("(c) messages/s", ">= 1,000,000", rate, rate >= 1e6)

    def d(self) -> None:
        ld = row(self.rows, "d", "logdist")
        if not ld:
            return
        load = ld["load"]
        ok = ld["p99_ms"] <= 50 and ld["errors"] == 0
        n = f"{load['emitters']:,} emitters"
        self.add(f"(d) p99 ms with zero errors, {n}", "<= 50, 0 errors", ld["p99_ms"], ok)
        cpu = load["control_plane_pct"]
        cost = cpu["total"]
        self.add("(d) control plane, % of a core", "<= 5", cost, cost <= 5)
        # The per-packet count by emitter is ingest work; with it, the figure still holds?
        both = round(cost + cpu["tally"], 2)
        self.add("(d) control plane + per-packet tally, % of a core", "<= 5", both, both <= 5)
        kb = round(max(load["status_bytes"], load["ws_frame_bytes"]) / 1024, 1)
        self.add("(d) /status and a /ws/metrics frame, KB", "<= 16", kb, kb <= 16)

    def e(self) -> None:
        # The distributor holding many analyzers (its row has the idle figures), and four.
        le = next((r for r in self.rows if r["scenario"] == "e" and "idle" in r), {})
        l4 = row(self.rows, "e", "logdist 4 an.")
        if le and l4:
            n = f"{le['analyzers']:,}"
            r = ratio(le, l4, "packets_per_s")
            self.add(
                f"(e) (a) through {n} analyzers / through 4",
                ">= 0.8",
                r,
                r is not None and r >= 0.8,
            )
            cpu = le["idle"]["cpu_pct"]
            self.add(f"(e) idle CPU with {n} analyzers, % of a core", "<= 5", cpu, cpu <= 5)
            kb = round(le["idle"]["status_bytes"] / 1024, 1)
            self.add(f"(e) /status with {n} analyzers, KB", "<= 16", kb, kb <= 16)
        picks = [r for r in self.rows if r["front_end"] == "picker"]
        picks.sort(key=lambda r: r["analyzers"])
        if len(picks) >= 2:
            small, large = picks[0], picks[-1]
            r = round(large["registry_assign_us"] / small["registry_assign_us"], 2)
            name = f"(e) pick cost, {large['analyzers']:,} / {small['analyzers']} analyzers"
            self.add(name, "<= 2", r, r <= 2)

    def g_h(self) -> None:
        lc, lg = row(self.rows, "c", "logdist"), row(self.rows, "g", "otlp-in")
        if lg:
            r = ratio(lg, lc, "messages_per_s")
            self.add("(g) OTLP records/s / (c) messages/s", "report", r, None)
            us = us_per_message(lg)
            name = "(g) OTLP in -> otlp out: distributor CPU µs a record (with its children)"
            self.add(name, "<= 5", us, us is not None and us <= 5)
            self.share("g", lg)
        lh = row(self.rows, "h", "logdist")
        if lh:
            rate = lh["messages_per_s"]
            self.add(
                "(h) syslog messages/s, 8 TCP connections", ">= 150,000", rate, rate >= 150_000
            )
            self.share("h", lh)

    def k(self) -> None:
        lc = row(self.rows, "c", "logdist")
        for fmt in ("records", "elasticsearch", "loki", "otlp"):
            lk = row(self.rows, "k", f"logdist>{fmt}")
            if not lk:
                continue
            r = ratio(lk, lc, "messages_per_s")
            name = f"(k) (c) converted to {fmt} / (c), delivered messages/s"
            self.add(name, ">= 0.4", r, r is not None and r >= 0.4)
            self.share(f"k {fmt}", lk)

    def l(self) -> None:  # noqa: E743 — the scenario's letter
        tls_a = row(self.rows, "l", "logdist-tls", like="a")
        r = ratio(tls_a, row(self.rows, "l", "nginx-tls", like="a"), "packets_per_s")
        if r is not None:
            self.add("(l) (a) delivered packets/s, logdist-TLS / nginx-TLS", ">= 1.0", r, r >= 1)
        tls_c = row(self.rows, "l", "logdist-tls", like="c")
        r = ratio(tls_c, row(self.rows, "l", "logdist", like="c"), "messages_per_s")
        if r is not None:
            self.add("(l) (c) with TLS / (c) without, messages/s", ">= 0.7", r, r >= 0.7)
        for front in ("logdist-tls", "nginx-tls"):
            hs = row(self.rows, "l", front, like="handshakes")
            if hs:
                self.add(f"(l) handshakes/s of new connections, {front}", "report",
                         hs["handshakes_per_s"], None)  # fmt: skip

    def m(self) -> None:
        fair, fifo = row(self.rows, "m", "logdist fair"), row(self.rows, "m", "logdist fifo")
        for m, on in ((fair, True), (fifo, False)):
            if not m:
                continue
            pct, p99, over = m["steady_accepted_pct"], m["p99_ms"], m["analyzers_over_cap"]
            mode = "on" if on else "off"
            if on:
                self.add("(m) steady packets accepted, %, fairness on", ">= 99.9", pct, pct >= 99.9)
                met = p99 is not None and p99 <= 1000
                self.add("(m) steady delay p99 ms, fairness on", "<= 1000", p99, met)
            else:
                self.add("(m) steady packets accepted, %, fairness off", "report", pct, None)
                self.add("(m) steady delay p99 ms, fairness off", "report", p99, None)
            self.add(f"(m) analyzers' packets/s / their cap, fairness {mode}", "report", over, None)
            self.add(f"(m) burst requests accepted, %, fairness {mode}", "report",
                     m["burst_accepted_pct"], None)  # fmt: skip
        r = ratio(fair, fifo, "packets_per_s")
        if r is not None:
            # FIFO keeps the analyzers busy by construction: fairness must not idle them.
            self.add("(m) analyzers' packets/s, fairness on / off", ">= 0.95", r, r >= 0.95)

    def i(self) -> None:
        lc, li = row(self.rows, "c", "logdist"), row(self.rows, "i", "logdist")
        if li:
            r = ratio(li, lc, "messages_per_s")
            self.add(
                "(i) (c) into stores / (c), messages/s", ">= 0.25", r, r is not None and r >= 0.25
            )
            ok = li["stored_messages"] == li["counted_messages"]
            self.add("(i) delivered messages found in the stores", "all", li["stored_messages"], ok)
        search = row(self.rows, "i", "search")
        if search:
            n = f"{search['fill']['messages'] / 1e6:.1f} M"
            p95 = search["search"]["p95_ms"]
            self.add(f"(i) search p95 ms, text+level+24 h, {n} stored", "<= 200", p95, p95 <= 200)
            p95 = search["histogram"]["p95_ms"]
            self.add(f"(i) histogram p95 ms, whole range, {n}", "<= 500", p95, p95 <= 500)

    def j_f(self) -> None:
        for key in ("a", "c"):
            spooled = row(self.rows, "f", "logdist+spool", like=key)
            clustered = row(self.rows, "j", "logdist cluster", like=key)
            r = ratio(clustered, spooled, "messages_per_s")
            if r is not None:
                goal, met = (">= 0.5", r >= 0.5) if key == "c" else ("report", None)
                self.add(f"(j) cluster / one distributor with its spool, ({key})", goal, r, met)
        for key in ("a", "c"):
            spooled = row(self.rows, "f", "logdist+spool", like=key)
            r = ratio(spooled, row(self.rows, key, "logdist"), "messages_per_s")
            if r is not None:
                self.add(f"(f) spool cost on ({key}), throughput kept", ">= 0.75", r, r >= 0.75)


def targets(rows: list[dict[str, Any]], analyzers: str = "logdist") -> list[dict[str, Any]]:
    """The performance issues' targets, each with the figures it was judged on."""
    t = Targets(rows)
    t.a()
    if analyzers == "foreign":
        t.foreign()
    else:
        for part in (t.b_c, t.d, t.e, t.g_h, t.i, t.j_f, t.k, t.l, t.m):
            part()
    t.baseline()
    return t.out


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
