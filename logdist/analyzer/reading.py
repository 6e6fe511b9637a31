"""Reading the store: search, histogram and context over its segments, each on a read-only
connection of its own (in the caller's thread), never holding the writer."""

from __future__ import annotations

import math
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from logdist.analyzer.segments import (
    COLUMNS,
    Segment,
)
from logdist.errors import NotFound
from logdist.search.fts import check_fts
from logdist.search.query import (
    LEVELS,
    MINUTE_MS,
    Key,
    Query,
    bucket_plan,
    cursor_after,
    histogram_body,
    iso,
    page_answer,
)


class Reading:
    """The read side of `Store`: what it needs of the store is declared here."""

    analyzer: str
    dir: Path
    segments: list[Segment]
    _lock: threading.Lock
    _spans: dict[str, tuple[int, int]]

    def _readable(self) -> list[Segment]:
        with self._lock:
            return list(self.segments)

    @contextmanager
    def _reader(self, segment: Segment) -> Iterator[sqlite3.Connection | None]:
        try:
            conn = sqlite3.connect(f"file:{segment.path}?mode=ro", uri=True)
        except sqlite3.OperationalError:  # removed by retention meanwhile
            yield None
            return
        try:
            yield conn
        finally:
            conn.close()

    def search(self, query: Query) -> dict[str, Any]:
        """One page of stored messages matching `query`, in its order, and the next cursor."""
        if query.analyzers and self.analyzer not in query.analyzers:
            return page_answer([], None, [])
        check_fts(query.q)
        desc = not query.ascending
        rows: list[tuple[Any, ...]] = []
        # Segments whose times can hold the newest (oldest) matches first; stop once a page
        # is full and no segment left can hold anything before its last row.
        for segment, (low, high) in self._by_time(query, desc):
            if len(rows) >= query.limit:
                edge = rows[query.limit - 1][0]
                if (high < edge) if desc else (low > edge):
                    break
            with self._reader(segment) as conn:
                if conn is None:
                    continue
                for level in query.levels or (None,):
                    rows += self._page(conn, query, level)
            rows.sort(key=lambda r: (r[0], r[2], r[3]), reverse=desc)
            del rows[query.limit :]
        found = [self._item(row) for row in rows]
        cursor = cursor_after(found[-1]) if len(found) == query.limit else None
        return page_answer(found, cursor, [])

    def _by_time(self, query: Query, desc: bool) -> list[tuple[Segment, tuple[int, int]]]:
        """The segments that hold messages in the query's time range, with the first and last
        `ts` each holds, newest (or oldest) first."""
        spans = []
        segments = self._readable()
        for segment in segments:
            span = self._spans.get(segment.name)
            if span is None:
                with self._reader(segment) as conn:
                    if conn is None:
                        continue
                    low, high = _edge(conn, [], [], False), _edge(conn, [], [], True)
                if low is None or high is None:
                    continue
                span = (low, high)
                if segment is not segments[-1]:  # a segment written no more keeps its span
                    self._spans[segment.name] = span
            if query.since is not None and span[1] < query.since:
                continue
            if query.until is not None and span[0] >= query.until:
                continue
            spans.append((segment, span))
        spans.sort(key=lambda s: s[1][1] if desc else s[1][0], reverse=desc)
        return spans

    def _where(self, query: Query, level: int | None) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        if query.since is not None:
            where.append("ts >= ?")
            args.append(query.since)
        if query.until is not None:
            where.append("ts < ?")
            args.append(query.until)
        if level is not None:
            where.append("level = ?")
            args.append(level)
        for name in ("emitter", "service", "host"):
            value = getattr(query, name)
            if value is not None:
                where.append(f"{name} = ?")
                args.append(value)
        if query.q is not None:
            where.append("id IN (SELECT rowid FROM fts WHERE fts MATCH ?)")
            args.append(query.q)
        return where, args

    def _page(self, conn: sqlite3.Connection, query: Query, level: int | None) -> list[Any]:
        where, args = self._where(query, level)
        if query.cursor is not None:
            where.append(
                "(ts, packet, idx) > (?, ?, ?)"
                if query.ascending
                else "(ts, packet, idx) < (?, ?, ?)"
            )
            args.extend(query.cursor)
        order = "ASC" if query.ascending else "DESC"
        sql = (
            f"SELECT {COLUMNS} FROM logs"
            + _clause(where)
            + f" ORDER BY ts {order}, packet {order}, idx {order} LIMIT ?"
        )
        return conn.execute(sql, (*args, query.limit)).fetchall()

    def _item(self, row: tuple[Any, ...]) -> dict[str, Any]:
        ts, level, packet, idx, emitter, service, host, message, fields = row
        return {
            "ts": iso(ts),
            "level": LEVELS[level],
            "service": service,
            "host": host,
            "emitter": emitter,
            "message": message,
            "packetId": packet,
            "index": idx,
            "analyzer": self.analyzer,
            "fields": orjson.loads(fields) if fields else {},
        }

    def bounds(self, query: Query) -> tuple[int, int] | None:
        """The first and last `ts` stored that match `query` (None: nothing does)."""
        low: int | None = None
        high: int | None = None
        for segment in self._readable():
            with self._reader(segment) as conn:
                if conn is None:
                    continue
                for level in query.levels or (None,):
                    where, args = self._where(query, level)
                    a, b = _edge(conn, where, args, False), _edge(conn, where, args, True)
                    if a is not None and b is not None:
                        low = a if low is None else min(low, a)
                        high = b if high is None else max(high, b)
        return None if low is None or high is None else (low, high)

    def histogram(self, query: Query) -> dict[str, Any]:
        """Counts per bucket and level over [since, until) (the stored range when not given)."""
        if query.analyzers and self.analyzer not in query.analyzers:
            return {"buckets": [], "total": 0, "partial": []}
        check_fts(query.q)
        since, until = query.since, query.until
        if since is None or until is None:
            found = self.bounds(query)
            if found is None:
                return {"buckets": [], "total": 0, "partial": []}
            since = found[0] if since is None else since
            until = found[1] + 1 if until is None else until
        start, width, count = bucket_plan(since, until, query.buckets)
        counts: Counter[tuple[int, int]] = Counter()
        ranged = replace(query, since=since, until=until)
        for segment in self._readable():
            with self._reader(segment) as conn:
                if conn is None:
                    continue
                if query.only_time_and_level:
                    self._count_rollup(conn, ranged, start, width, counts)
                else:
                    self._count_rows(conn, ranged, start, width, counts)
        body = histogram_body(since, until, query.buckets, counts)
        body["partial"] = []
        return body

    def _count_rows(
        self,
        conn: sqlite3.Connection,
        query: Query,
        start: int,
        width: int,
        counts: Counter[tuple[int, int]],
    ) -> None:
        for level in query.levels or (None,):
            where, args = self._where(query, level)
            sql = (
                "SELECT (ts - ?) / ?, level, count(*) FROM logs" + _clause(where) + " GROUP BY 1, 2"
            )
            for bucket, lv, n in conn.execute(sql, (start, width, *args)):
                counts[bucket, lv] += n

    def _count_rollup(
        self,
        conn: sqlite3.Connection,
        query: Query,
        start: int,
        width: int,
        counts: Counter[tuple[int, int]],
    ) -> None:
        """Whole minutes from the rollup, the partial minutes at either end from the rows."""
        assert query.since is not None and query.until is not None
        first = math.ceil(query.since / MINUTE_MS)  # the first whole minute
        last = query.until // MINUTE_MS  # the minute `until` falls in (not whole)
        if first >= last:
            self._count_rows(conn, query, start, width, counts)
            return
        levels = query.levels
        marks = f" AND level IN ({','.join('?' * len(levels))})" if levels else ""
        sql = (
            "SELECT (minute * 60000 - ?) / ?, level, sum(n) FROM rollup"
            f" WHERE minute >= ? AND minute < ?{marks} GROUP BY 1, 2"
        )
        for bucket, lv, n in conn.execute(sql, (start, width, first, last, *levels)):
            counts[bucket, lv] += n
        edges = [(query.since, first * MINUTE_MS), (last * MINUTE_MS, query.until)]
        for since, until in edges:
            if since < until:
                edge = replace(query, since=since, until=until)
                self._count_rows(conn, edge, start, width, counts)

    def context(self, packet: str, index: int, before: int, after: int) -> dict[str, Any]:
        """The message (`packet`, `index`) and up to `before`/`after` messages around it from
        the same emitter, in time order."""
        anchor = self.find(packet, index)
        if anchor is None:
            raise NotFound(f"no message {packet!r} #{index} is stored here")
        key: Key = (anchor[0], anchor[2], anchor[3])
        emitter = anchor[4]
        older = self.search(Query(emitter=emitter, cursor=key, limit=max(before, 1)))["items"]
        newer = self.search(
            Query(emitter=emitter, cursor=key, limit=max(after, 1), ascending=True)
        )["items"]
        items = [*reversed(older[:before]), self._item(anchor), *newer[:after]]
        return {"items": items, "anchor": min(before, len(older)), "partial": []}

    def find(self, packet: str, index: int) -> tuple[Any, ...] | None:
        with closing(sqlite3.connect(f"file:{self.dir / 'ids.db'}?mode=ro", uri=True)) as ids:
            found = ids.execute("SELECT seg, row FROM ids WHERE packet = ?", (packet,)).fetchone()
        if found is None:
            return None
        name, first = found
        segment = next((s for s in self._readable() if s.name == name), None)
        if segment is None:
            return None
        with self._reader(segment) as conn:
            if conn is None:
                return None
            row: tuple[Any, ...] | None = conn.execute(
                f"SELECT {COLUMNS} FROM logs WHERE id = ? AND packet = ?", (first + index, packet)
            ).fetchone()
        return row

    def _held_rows(self) -> int:
        """Messages the store holds (rows are numbered from 1 in each segment)."""
        total = 0
        for segment in self._readable():
            with self._reader(segment) as conn:
                if conn is not None:
                    total += conn.execute("SELECT coalesce(max(id), 0) FROM logs").fetchone()[0]
        return total


def _clause(where: list[str]) -> str:
    return f" WHERE {' AND '.join(where)}" if where else ""


def _edge(conn: sqlite3.Connection, where: list[str], args: list[Any], last: bool) -> int | None:
    """The first (or last) `ts` matching `where`: one step along an index. (`SELECT min(ts),
    max(ts)` in one statement reads every row: SQLite's shortcut takes one of them alone.)"""
    order = "DESC" if last else "ASC"
    sql = f"SELECT ts FROM logs{_clause(where)} ORDER BY ts {order} LIMIT 1"
    found = conn.execute(sql, args).fetchone()
    return None if found is None else int(found[0])
