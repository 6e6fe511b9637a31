"""The client's tables, rendered as a terminal shows them."""

from __future__ import annotations

from rich.console import Console

from logdist.cli.views import emitters_table


def test_the_emitters_table_shows_what_each_was_throttled() -> None:
    rows = [
        {"id": "burst", "url": "http://h:1", "state": "active", "last_seen_ago": 0.2,
         "received_packets": 900, "throttled": 37, "metrics": {"rps": 500, "retries": 40}},
        {"id": "quiet", "url": "http://h:2", "state": "active", "last_seen_ago": 1.0,
         "received_packets": 10, "throttled": 0, "metrics": {"rps": 1, "retries": 0}},
    ]  # fmt: skip
    console = Console(record=True, width=200)
    console.print(emitters_table(rows))
    lines = console.export_text().splitlines()
    header = next(line for line in lines if "throttled" in line)
    assert header.split() == [
        "id", "rate", "buffer", "received", "retries", "throttled", "state", "seen", "control",
        "url",
    ]  # fmt: skip
    burst = next(line for line in lines if line.strip().startswith("burst"))
    assert burst.split()[1:6] == ["500", "?", "900", "40", "37"]
    quiet = next(line for line in lines if line.strip().startswith("quiet"))
    assert quiet.split()[5] == "0"
