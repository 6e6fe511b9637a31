"""Terminal views of the distributor's status, shared by `ctl status` and `top`."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

HEALTH_STYLE = {"up": "green", "down": "bold red", "unknown": "yellow"}


def console() -> Console:
    """A console for tables: a terminal's own width; piped or redirected, wide enough that no
    column is cut (rich would assume 80)."""
    out = Console()
    return out if out.is_terminal else Console(width=200)


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def rate(x: float) -> str:
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


def queue_line(status: dict[str, Any], msgs_per_s: float | None = None) -> Text:
    q, c = status["queue"], status["counters"]
    rejected = sum(c["rejected"].values())
    parts = [
        ("queue ", "dim"),
        (f"{q['depth']}/{q['capacity']}", "bold"),
        ("  unacked ", "dim"),
        (str(q["unacked"]), "bold"),
        ("  received ", "dim"),
        (str(c["received_messages"]), "bold"),
        ("  delivered ", "dim"),
        (str(c["delivered_messages"]), "bold"),
        ("  retries ", "dim"),
        (str(c["retries"]), "bold"),
        ("  rejected ", "dim"),
        (str(rejected), "bold red" if rejected else "bold"),
    ]
    dead = status.get("dead_letters") or {}
    if dead.get("count") or c.get("refused"):
        parts += [
            ("  refused ", "dim"),
            (str(c.get("refused", 0)), "bold yellow"),
            ("  dead letters ", "dim"),
            (str(dead.get("count", 0)), "bold red"),
        ]
        if dead.get("full"):
            parts.append((" (full: ingest paused)", "bold red"))
    if msgs_per_s is not None:
        parts += [("  msg/s ", "dim"), (rate(msgs_per_s), "bold cyan")]
    return Text.assemble(*parts, *fairness_parts(status.get("fairness")))


def fairness_parts(f: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Fair admission on a line: the fair share while it is in force, and who was refused."""
    if not f or not f["on"]:
        return [("\nfair admission off", "dim")] if f else []
    parts = [("\nfair admission ", "dim")]
    if f["fair_share"] is None:
        parts.append((f"calm (held {f['held']}, budget {f['budget']})", "green"))
    else:
        parts.append((f"in force: fair share {f['fair_share']} packets", "bold yellow"))
    if f["throttled"]:
        parts += [
            ("  throttled ", "dim"),
            (f"{f['throttled']:,}", "bold red"),
            (f" ({f['throttling']} now)  most: ", "dim"),
            (", ".join(f"{t['id']} ({t['throttled']:,})" for t in f["top_throttled"]), "red"),
        ]
    return parts


def format_cell(a: dict[str, Any]) -> str:
    """The declared format; for `auto`, what its /health led to."""
    fmt = str(a.get("format", "auto"))
    if fmt == "auto":
        return "auto:ndjson" if a.get("batch") else "auto:json"
    return fmt


def analyzers_title(summary: dict[str, Any] | None) -> str:
    """`analyzers`, or for a large pool the counts and which rows are shown."""
    if not summary or summary.get("shown") == "all":
        return "analyzers"
    h, st = summary["health"], summary["state"]
    return (
        f"analyzers {summary['total']:,}: {h['up']:,} up, {h['down']:,} down,"
        f" {h['unknown']:,} unknown · {st['enabled']:,} enabled, {st['disabled']:,} disabled,"
        f" {st['draining']:,} draining · shown: {summary['shown']}"
        " (logdist ctl analyzers lists them)"
    )


def analyzers_table(
    analyzers: list[dict[str, Any]],
    per_second: dict[str, float] | None = None,
    recent: dict[str, float] | None = None,
    title: str = "analyzers",
) -> Table:
    """Target vs actual message shares; `recent`/`per_second` when the caller has samples."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", no_wrap=True, min_width=2)
    table.add_column("health", no_wrap=True, min_width=6)
    table.add_column("state", no_wrap=True, min_width=8)
    table.add_column("format", no_wrap=True, min_width=6)
    live = per_second is not None
    names = ["weight", "target"]
    names += ["recent"] if recent is not None else []
    names += ["actual", "msg/s" if live else "delivered", "pending", "downs"]
    for name in names:
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    for a in analyzers:
        label = a["health"] + ("·passive" if a.get("health_check") == "passive" else "")
        health = Text(label, style=HEALTH_STYLE.get(a["health"], ""))
        row: list[Any] = [
            a["id"],
            health,
            a["state"],
            format_cell(a),
            f"{a['weight']:g}",
            pct(a["target_share"]),
        ]
        if recent is not None:
            row.append(pct(recent.get(a["id"], 0.0)))
        row.append(pct(a["actual_share"]))
        if per_second is not None:
            row.append(rate(per_second.get(a["id"], 0.0)))
        else:
            row.append(str(a["delivered_messages"]))
        row += [str(a["pending"]), str(a.get("downs", 0))]
        table.add_row(*row)
    errors = [f"{a['id']}: {a['last_error']}" for a in analyzers if a.get("last_error")]
    if errors:
        table.caption = "last errors: " + "; ".join(errors)
        table.caption_justify = "left"
    return table


STATE_STYLE = {"active": "green", "paused": "yellow", "gone": "red"}


def emitters_table(emitters: list[dict[str, Any]], title: str = "emitters") -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    # On a narrow terminal the control URL gives way first, the ids and counts not at all.
    longest = max((len(e["id"]) for e in emitters), default=2)
    table.add_column("id", no_wrap=True, min_width=min(longest, 32))
    # `received`, `share` (of what the distributor holds now) and `throttled` (requests
    # answered 429: past its fair share or its limit) are the distributor's own counts; rate,
    # buffer and retries are the emitter's as it last reported them (on registering, and on
    # each change of state).
    for name in ("rate", "buffer", "received", "retries", "share", "throttled"):
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    table.add_column("state", no_wrap=True, min_width=6)
    table.add_column("seen", justify="right", no_wrap=True, min_width=7)
    table.add_column("control url", no_wrap=True, overflow="ellipsis")
    for e in emitters:
        m = e.get("metrics") or {}
        state = e.get("state") or ("paused" if m.get("paused") else "active")
        table.add_row(
            e["id"],
            f"{m.get('rps', '?')}",
            f"{m.get('buffer_len', '?')}",
            f"{e.get('received_packets', '?')}",
            f"{m.get('retries', '?')}",
            pct(e.get("share", 0.0)),
            Text(f"{e.get('throttled', 0)}", style="bold red" if e.get("throttled") else ""),
            Text(state, style=STATE_STYLE.get(state, "")),
            f"{e.get('last_seen_ago', 0):.0f}s ago",
            Text(e["url"], style="dim"),
        )
    return table


def emitter_summary_line(summary: dict[str, Any]) -> Text:
    """One line for a fleet: counts by state, the configured rate, and the top few."""
    line = Text("emitters ", style="bold")
    line.append(f"{summary['total']:,}: ")
    for state in ("active", "paused", "gone"):
        line.append(f"{summary[state]:,} {state}", style=STATE_STYLE[state])
        line.append(", " if state != "gone" else "")
    line.append(f" · {summary['rps']:,.0f} pkt/s set · {summary['buffered']:,} buffered")
    if summary.get("forgotten"):
        line.append(f" · {summary['forgotten']:,} forgotten")
    for key, label, field in (
        ("top_by_buffer", "fullest buffers", "buffer_len"),
        ("top_by_rate", "fastest", "rps"),
    ):
        top = summary.get(key) or []
        if top:
            line.append(f"\n  {label}: ")
            line.append(", ".join(f"{t['id']} ({t[field]:g})" for t in top), style="dim")
    line.append("\n  logdist ctl emitters lists them (--q, --state)", style="dim")
    return line


def emitters_view(status: dict[str, Any]) -> Table | Text:
    """Every emitter while there are few; a summary line for a fleet."""
    summary = status.get("emitter_summary")
    rows = status.get("emitters") or []
    if summary is None or (rows and len(rows) == summary["total"]) or not summary["total"]:
        return emitters_table(rows)
    return emitter_summary_line(summary)


def cluster_view(status: dict[str, Any]) -> list[Any]:
    """Cluster mode: the shared stream and consumer on one line, the replicas in a table
    (nothing without a cluster)."""
    c = status.get("cluster")
    if not c:
        return []
    st = c.get("stream_state") or {}
    parts: list[tuple[str, str]] = [
        ("cluster ", "dim"),
        (c["stream"], "bold"),
        ("  as ", "dim"),
        (c["replica"], "bold"),
    ]
    if not c["ready"]:
        parts.append(("  not ready: waiting for the NATS servers", "bold red"))
    if "error" in st:
        parts.append((f"  stream: {st['error']}", "bold red"))
    elif st:
        parts += [
            ("  stream ", "dim"),
            (f"{st['messages']} msgs", "bold"),
            (f" {st['bytes'] / 1e6:.1f}/{st['max_bytes'] / 1e6:.0f} MB", "bold"),
            ("  unfetched ", "dim"),
            (str(st["consumer_pending"]), "bold"),
            ("  in flight ", "dim"),
            (str(st["consumer_ack_pending"]), "bold"),
            ("  redelivered ", "dim"),
            (str(st["redelivered"]), "bold yellow" if st["redelivered"] else "bold"),
        ]
    share = (c.get("fairness") or {}).get("fair_share")
    if share is not None:  # past the budget: emitters past this are refused 429
        parts += [("  fair share ", "dim"), (f"{share / 1e6:.1f} MB", "bold yellow")]
    table = Table(title="replicas", title_justify="left", box=box.SIMPLE_HEAD)
    for name in ("id", "url", "state", "seen", "in flight", "fetched", "acked"):
        table.add_column(
            name, justify="right" if name in ("in flight", "fetched", "acked") else "left"
        )
    for r in c.get("replicas", []):
        table.add_row(
            r["id"] + (" (this)" if r["id"] == c["replica"] else ""),
            r.get("url", ""),
            Text("up", style="green") if r["up"] else Text("gone", style="bold red"),
            f"{r['last_seen']:.0f}s ago",
            str(r.get("in_flight", 0)),
            str(r.get("fetched", 0)),
            str(r.get("acked", 0)),
        )
    return [Text.assemble(*parts), table]


def status_view(status: dict[str, Any]) -> Group:
    title = analyzers_title(status.get("analyzer_summary"))
    return Group(
        queue_line(status),
        *cluster_view(status),
        analyzers_table(status["analyzers"], title=title),
        emitters_view(status),
    )
