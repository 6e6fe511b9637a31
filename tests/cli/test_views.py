"""The client's tables, rendered as a terminal shows them."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from logdist.cli.views import cluster_view, emitters_table, queue_line


def test_the_emitters_table_shows_each_ones_share_and_what_it_was_throttled() -> None:
    rows = [
        {"id": "burst", "url": "http://h:1", "state": "active", "last_seen_ago": 0.2,
         "received_packets": 900, "share": 0.8125, "throttled": 37,
         "metrics": {"rps": 500, "retries": 40}},
        {"id": "quiet", "url": "http://h:2", "state": "active", "last_seen_ago": 1.0,
         "received_packets": 10, "share": 0.001, "throttled": 0,
         "metrics": {"rps": 1, "retries": 0}},
    ]  # fmt: skip
    console = Console(record=True, width=200)
    console.print(emitters_table(rows))
    lines = console.export_text().splitlines()
    header = next(line for line in lines if "throttled" in line)
    assert header.split() == [
        "id", "rate", "buffer", "received", "retries", "share", "throttled", "state", "seen",
        "control", "url",
    ]  # fmt: skip
    burst = next(line for line in lines if line.strip().startswith("burst"))
    assert burst.split()[1:7] == ["500", "?", "900", "40", "81.2%", "37"]
    quiet = next(line for line in lines if line.strip().startswith("quiet"))
    assert quiet.split()[5:7] == ["0.1%", "0"]


def status(fairness: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "queue": {"depth": 10, "capacity": 100, "unacked": 12},
        "counters": {"rejected": {"throttled": 5}, "received_messages": 50,
                     "delivered_messages": 38, "retries": 0},
        "fairness": fairness,
    }  # fmt: skip


def test_the_queue_line_says_whether_fair_admission_is_in_force_and_who_is_refused() -> None:
    calm: dict[str, Any] = {"on": True, "held": 12, "budget": 50, "fair_share": None,
                            "throttled": 0, "throttling": 0, "top_throttled": []}  # fmt: skip
    assert "fair admission calm (held 12, budget 50)" in queue_line(status(calm)).plain
    top = [{"id": "burst", "throttled": 1200}, {"id": "b2", "throttled": 34}]
    pressed = {**calm, "held": 80, "fair_share": 7, "throttled": 1234, "throttling": 1,
               "top_throttled": top}  # fmt: skip
    line = queue_line(status(pressed)).plain
    assert "in force: fair share 7 packets" in line
    assert "throttled 1,234 (1 now)  most: burst (1,200), b2 (34)" in line
    assert "fair admission off" in queue_line(status({**calm, "on": False})).plain
    assert "fair admission" not in queue_line(status(None)).plain


def test_the_cluster_line_gives_the_streams_fair_share_while_it_is_in_force() -> None:
    stream = {"messages": 300, "bytes": 900_000, "max_bytes": 1_048_576,
              "consumer_pending": 10, "consumer_ack_pending": 36, "redelivered": 0}  # fmt: skip
    c = {"stream": "LOGDIST", "replica": "d1", "ready": True, "stream_state": stream,
         "replicas": [], "fairness": {"fair_share": None}}  # fmt: skip
    calm = cluster_view({"cluster": c})[0].plain
    assert "stream 300 msgs 0.9/1 MB" in calm and "fair share" not in calm
    c["fairness"] = {"fair_share": 812_000}
    assert "fair share 0.8 MB" in cluster_view({"cluster": c})[0].plain
