"""The analyzer's store: dedupe across restarts, retention, full-text queries, cursors,
histograms, context — on real SQLite files in a temporary directory."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from logdist.analyzer.segments import Item
from logdist.analyzer.store import Store
from logdist.errors import InvalidRequest, NotFound
from logdist.search.query import LEVELS, Query, decode_cursor, parse_query
from tests.support import packets as support

T0 = 1_796_205_600_000  # 2026-12-02T10:00:00Z


def packet(pid: str, *messages: dict[str, Any], emitter: str = "e1") -> Item:
    return pid, emitter, orjson.dumps(support.packet(pid, messages, emitter))


def msg(text: str, ms: int, level: str = "INFO", **extra: Any) -> dict[str, Any]:
    stamp = f"2026-12-02T10:00:{ms // 1000:02d}.{ms % 1000:03d}Z"
    return {"ts": stamp, "level": level, "service": "api", "host": "h1", "message": text, **extra}


def write(store: Store, items: list[Item]) -> Any:
    async def go() -> Any:
        return await store.submit(items)

    return asyncio.run(go())


def opened(path: Path, **kw: Any) -> Store:
    store = Store(path, "a1", **kw)
    store.open()
    return store


def texts(result: dict[str, Any]) -> list[str]:
    return [item["message"] for item in result["items"]]


def test_a_packet_is_stored_once_even_after_a_restart(tmp_path: Path) -> None:
    store = opened(tmp_path)
    first = write(store, [packet("p1", msg("one", 0)), packet("p1", msg("one", 0))])
    assert (first.new, first.counts) == ([0], [1])  # the copy in the same request
    store.close()
    again = opened(tmp_path)
    second = write(again, [packet("p1", msg("one", 0)), packet("p2", msg("two", 1))])
    assert (second.new, second.counts) == ([1], [1])
    assert texts(again.search(Query())) == ["two", "one"]
    again.close()


def test_ids_whose_rows_never_committed_are_forgotten_at_the_next_start(tmp_path: Path) -> None:
    """The ids are committed before the rows; a crash between the two must not make the
    packet a 'duplicate' when it is sent again."""
    store = opened(tmp_path)
    write(store, [packet("p1", msg("one", 0))])
    segment = store.segments[-1].name
    store.close()
    with sqlite3.connect(tmp_path / "ids.db") as ids:
        ids.execute("INSERT INTO ids VALUES ('p2', ?, 2)", (segment,))  # as a crash leaves it
    again = opened(tmp_path)
    result = write(again, [packet("p2", msg("two", 1))])
    assert result.new == [0]
    assert texts(again.search(Query())) == ["two", "one"]
    again.close()


def test_rows_keep_every_field_and_levels_are_normalised(tmp_path: Path) -> None:
    store = opened(tmp_path)
    write(
        store,
        [
            packet(
                "p1",
                msg("careful", 0, "warning", user={"id": 7}),
                {"ts": "not a date", "level": "loud", "message": {"nested": True}},
            )
        ],
    )
    items = store.search(Query(ascending=True))["items"]
    assert items[0]["level"] == "WARN" and items[0]["fields"] == {"user": {"id": 7}}
    assert (items[0]["service"], items[0]["host"], items[0]["emitter"]) == ("api", "h1", "e1")
    assert items[1]["level"] == "INFO" and items[1]["message"] == '{"nested":true}'
    assert items[1]["fields"] == {"ts_raw": "not a date", "level_raw": "loud"}
    store.close()


def test_full_text_phrases_prefixes_and_filters(tmp_path: Path) -> None:
    store = opened(tmp_path)
    write(
        store,
        [
            packet(
                "p1",
                msg("disk full on sda", 0, "ERROR"),
                msg("disk almost full", 1, "WARN"),
                msg("connection reset by peer", 2, "ERROR", service="db"),
            ),
            packet("p2", msg("diskette inserted", 3), emitter="e2"),
        ],
    )
    assert texts(store.search(Query(q="disk"))) == ["disk almost full", "disk full on sda"]
    assert texts(store.search(Query(q='"full on"'))) == ["disk full on sda"]
    assert len(store.search(Query(q="disk*"))["items"]) == 3
    assert texts(store.search(Query(q="disk", levels=(4,)))) == ["disk full on sda"]
    assert texts(store.search(Query(levels=(3, 4)))) == [
        "connection reset by peer",
        "disk almost full",
        "disk full on sda",
    ]
    assert texts(store.search(Query(emitter="e2"))) == ["diskette inserted"]
    assert texts(store.search(Query(service="db"))) == ["connection reset by peer"]
    assert texts(store.search(Query(since=T0 + 1, until=T0 + 3))) == [
        "connection reset by peer",
        "disk almost full",
    ]
    with pytest.raises(InvalidRequest, match="q: not a full-text query"):
        store.search(Query(q='"unterminated'))
    store.close()


def test_cursors_page_through_everything_once_in_order(tmp_path: Path) -> None:
    store = opened(tmp_path, segment_seconds=0.001)  # a segment a request: pages span them
    for p in range(10):
        write(store, [packet(f"p{p}", *(msg(f"m{p}-{i}", p * 10 + i % 3) for i in range(7)))])
    assert len(store.segments) == 10
    seen: list[tuple[str, int]] = []
    query = Query(limit=9)
    while True:
        page = store.search(query)
        seen += [(i["packetId"], i["index"]) for i in page["items"]]
        if page["cursor"] is None:
            break
        query = replace(query, cursor=decode_cursor(page["cursor"]))
    assert len(seen) == len(set(seen)) == 70
    keys = [(int(p[1:]) * 10 + i % 3, p, i) for p, i in seen]
    assert keys == sorted(keys, reverse=True)
    # The same from the oldest.
    up = store.search(Query(limit=70, ascending=True))["items"]
    assert [(i["packetId"], i["index"]) for i in up] == list(reversed(seen))
    store.close()


def test_histogram_counts_by_level_from_rollups_and_rows_alike(tmp_path: Path) -> None:
    store = opened(tmp_path)
    levels = ["INFO", "ERROR", "INFO", "WARN", "INFO", "ERROR"]
    # Six messages, ten seconds apart, from 10:00:00: one minute.
    messages = [
        {"ts": f"2026-12-02T10:00:{i * 10:02d}Z", "level": lv, "message": f"m{i}"}
        for i, lv in enumerate(levels)
    ]
    write(store, [packet("p1", *messages)])
    whole = store.histogram(Query(buckets=6))  # the stored range: 10:00:00 … 10:00:50
    assert whole["total"] == 6
    assert sum(sum(b["counts"].values()) for b in whole["buckets"]) == 6
    # Over an hour around it, from the rollup; the same with a text filter, from the rows.
    hour = Query(since=T0 - 1_800_000, until=T0 + 1_800_000, buckets=60)
    by_rollup = store.histogram(hour)
    by_rows = store.histogram(replace(hour, q="m0 OR m1 OR m2 OR m3 OR m4 OR m5"))
    assert by_rollup["buckets"] == by_rows["buckets"]
    assert [b for b in by_rollup["buckets"] if b["counts"]] == [
        {
            "start": "2026-12-02T10:00:00.000Z",
            "end": "2026-12-02T10:01:00.000Z",
            "counts": {"INFO": 3, "WARN": 1, "ERROR": 2},
        }
    ]
    # A range that cuts the minute: its edges are counted from the rows.
    cut = store.histogram(Query(since=T0 + 15_000, until=T0 + 45_000, buckets=1))
    assert cut["total"] == 3 and cut["buckets"][0]["counts"] == {"INFO": 2, "WARN": 1}
    assert store.histogram(replace(hour, levels=(4,)))["total"] == 2
    store.close()


def test_context_shows_the_same_emitters_neighbours_in_time_order(tmp_path: Path) -> None:
    store = opened(tmp_path)
    write(store, [packet("p1", *(msg(f"e1-{i}", i * 10) for i in range(5)))])
    write(store, [packet("p2", *(msg(f"e2-{i}", i * 10 + 5) for i in range(5)), emitter="e2")])
    write(store, [packet("p3", msg("e1-late", 60))])
    context = store.context("p1", 2, 1, 2)
    assert texts(context) == ["e1-1", "e1-2", "e1-3", "e1-4"] and context["anchor"] == 1
    assert texts(store.context("p3", 0, 2, 5)) == ["e1-3", "e1-4", "e1-late"]
    with pytest.raises(NotFound):
        store.context("p9", 0, 1, 1)
    store.close()


def test_retention_deletes_the_oldest_segments_and_counts_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = [1_800_000_000.0]
    store = opened(
        tmp_path, segment_seconds=60, max_age=3600, max_bytes=1 << 30, clock=lambda: clock[0]
    )
    for p in range(4):
        write(store, [packet(f"p{p}", msg(f"m{p}", p), msg(f"n{p}", p))])
        clock[0] += 2000  # a new segment each time
    write(store, [packet("p4", msg("m4", 4))])
    # Segments whose next began more than an hour ago are gone: p0's and p1's.
    assert texts(store.search(Query())) == ["m4", "n3", "m3", "n2", "m2"]
    assert store.stats.removed_segments == 2 and store.stats.removed_messages == 4
    assert "event=store_retention" in caplog.text and "reason=max_age" in caplog.text
    assert len(list(tmp_path.glob("seg-*.db"))) == 3
    # Their ids went with them: the same packet is stored again.
    assert write(store, [packet("p0", msg("m0 again", 0))]).new == [0]
    store.close()


def test_retention_by_size_keeps_the_total_under_the_limit(tmp_path: Path) -> None:
    store = opened(tmp_path, max_bytes=1 << 20)  # segments roll at a tenth of it
    text = "x" * 2000
    for p in range(60):
        write(store, [packet(f"p{p}", *(msg(f"{text} {p} {i}", i) for i in range(10)))])
    sizes = sum(os.path.getsize(f) for f in tmp_path.glob("seg-*"))
    assert store.stats.removed_segments > 0
    assert sizes <= (1 << 20) + (1 << 20) // 10 + 200_000  # the limit, a segment, a WAL's tail
    newest = store.search(Query(limit=1))["items"][0]
    assert newest["packetId"] == "p59"
    store.close()


def test_query_parameters_are_checked_by_name() -> None:
    now = T0
    q = parse_query({"q": "disk", "since": "15m", "until": "2026-12-02T10:00:00Z"}, now)
    assert (q.q, q.since, q.until) == ("disk", now - 900_000, T0)
    assert parse_query({"level": "warning,ERROR"}, now).levels == (3, 4)
    assert parse_query({"since": "1h30m"}, now).since == now - 5_400_000
    for params, field in [
        ({"since": "yesterday"}, "since"),
        ({"since": "1h", "until": "2h"}, "until"),
        ({"level": "LOUD"}, "level"),
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"buckets": "5000"}, "buckets"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"order": "up"}, "order"),
        ({"colour": "red"}, "colour"),
    ]:
        with pytest.raises(InvalidRequest) as caught:
            parse_query(params, now)
        assert caught.value.detail == {"field": field}, params
    assert LEVELS[parse_query({"level": "fatal"}, now).levels[0]] == "FATAL"
