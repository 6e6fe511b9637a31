"""The analyzer's log store: every message it acknowledged, searchable (`--store DIR`).

SQLite in WAL mode, in segments: one file per `segment_seconds` of arrival (an hour by
default), `DIR/seg-YYYYMMDDTHHMMSS.db`, each with the messages (`logs`), a full-text index on
their text (`fts`, FTS5 over `logs`) and counts per minute of `ts` and level (`rollup`, kept as
rows are written, so a histogram reads a few rows instead of scanning). Retention deletes whole
segments, oldest first. `DIR/ids.db` holds every stored packet id (and where its rows are):
the store's dedupe, across restarts and segments.

One writer thread does every write, in group commits: the requests that arrived while it wrote
the last batch go together into one transaction. A packet is acknowledged only after its
transaction committed. The ids are committed before the rows: a crash between the two leaves
ids whose rows are missing, and opening the store removes those (rows past the newest
segment's last), so a packet whose rows were lost is stored when it is sent again, never
dropped as a duplicate.

Reads (search, histogram, context) run in threads of their own on read-only connections, so
a slow query never holds the writer or the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from logdist.errors import Backpressure, NotFound
from logdist.events import event
from logdist.search.fts import check_fts
from logdist.search.query import (
    LEVELS,
    MINUTE_MS,
    Key,
    Query,
    Row,
    bucket_plan,
    cursor_after,
    histogram_body,
    iso,
    page_answer,
    rows_of,
)

log = logging.getLogger("logdist.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS logs(
    id INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    level INTEGER NOT NULL,
    packet TEXT NOT NULL,
    idx INTEGER NOT NULL,
    emitter TEXT,
    service TEXT,
    host TEXT,
    message TEXT NOT NULL,
    fields TEXT
);
CREATE INDEX IF NOT EXISTS logs_ts ON logs(ts);
CREATE INDEX IF NOT EXISTS logs_level ON logs(level, ts);
CREATE VIRTUAL TABLE IF NOT EXISTS fts
    USING fts5(message, content='logs', content_rowid='id', columnsize=0);
CREATE TABLE IF NOT EXISTS rollup(
    minute INTEGER NOT NULL,
    level INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (minute, level)
) WITHOUT ROWID;
"""
IDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS ids(
    packet TEXT PRIMARY KEY,
    seg TEXT NOT NULL,
    row INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ids_seg ON ids(seg, row);
"""
COLUMNS = "ts, level, packet, idx, emitter, service, host, message, fields"
# Packets a group commit takes at most; the rest wait for the next.
MAX_BATCH_PACKETS = 2_000
# Retention is looked at this often (seconds), and after every new segment.
RETAIN_EVERY = 5.0
# Packet ids looked up in one statement.
LOOKUP = 500

# One packet handed to the store: its id, its emitter, its JSON object.
Item = tuple[str, str | None, bytes]


@dataclass
class Written:
    """What one submitted request stored: its new packets (by position), and the messages
    of each."""

    new: list[int]
    counts: list[int]


@dataclass
class _Job:
    items: list[Item]
    done: Callable[[Written | BaseException], None]


@dataclass
class Segment:
    name: str
    path: Path
    started: float  # epoch seconds of its first arrival

    def size(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with suppress(FileNotFoundError):
                total += os.stat(f"{self.path}{suffix}").st_size
        return total


@dataclass
class StoreStats:
    batches: int = 0
    packets: int = 0
    messages: int = 0
    duplicates: int = 0
    failures: int = 0
    removed_segments: int = 0
    removed_messages: int = 0
    removed_bytes: int = 0
    last_error: str | None = None


class StoreError(Backpressure):
    """The store could not write: nothing of the request was acknowledged."""

    code = "store_failure"


def _segment_name(number: int, at: float) -> str:
    """`seg-NUMBER-START.db`: numbered in order (names sort as they were made), with the UTC
    second the segment began."""
    return f"seg-{number:08d}-{datetime.fromtimestamp(at, UTC):%Y%m%dT%H%M%S}.db"


def _segment_start(name: str) -> float:
    stamp = name.removesuffix(".db").rsplit("-", 1)[1]
    return datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(tzinfo=UTC).timestamp()


def _segment_number(name: str) -> int:
    return int(name.split("-")[1])


class Store:
    def __init__(
        self,
        directory: str | Path,
        analyzer: str,
        *,
        max_bytes: int | None = None,
        max_age: float | None = None,
        segment_seconds: float = 3600.0,
        sync: str = "full",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dir = Path(directory)
        self.analyzer = analyzer
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.segment_seconds = segment_seconds
        self.sync = sync
        self.clock = clock
        self.stats = StoreStats()
        self.segments: list[Segment] = []  # oldest first; the last one is written
        self._ids: sqlite3.Connection | None = None
        self._seg: sqlite3.Connection | None = None
        self._next_row = 1
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._retained = 0.0
        self._ts_cache: dict[str, int] = {}
        self.held = 0  # messages in the store now
        self._lock = threading.Lock()  # guards `segments` for readers
        # The first and last `ts` of each segment no longer written (for search's order).
        self._spans: dict[str, tuple[int, int]] = {}

    # -- opening and closing --------------------------------------------------------------

    def open(self, writer: bool = True) -> None:
        """Open (or create) the store, repair what a crash left, start the writer thread
        (without `writer`, `write` stores in the caller's thread: bulk loads)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ids = self._connect(self.dir / "ids.db")
        self._ids.executescript(IDS_SCHEMA)
        names = sorted(p.name for p in self.dir.glob("seg-*-*.db"))
        self.segments = [Segment(n, self.dir / n, _segment_start(n)) for n in names]
        if self.segments:
            newest = self.segments[-1]
            self._seg = self._connect(newest.path)
            self._seg.executescript(SCHEMA)
            (last,) = self._seg.execute("SELECT coalesce(max(id), 0) FROM logs").fetchone()
            self._next_row = last + 1
            # Ids committed whose rows were not (a crash between the two commits).
            orphans = self._ids.execute(
                "DELETE FROM ids WHERE seg = ? AND row > ?", (newest.name, last)
            ).rowcount
            if orphans:
                event(log, "store_orphan_ids_removed", logging.WARNING, count=orphans)
        self._retain_logged()
        self.held = self._held_rows()
        event(
            log,
            "store_opened",
            path=self.dir,
            segments=len(self.segments),
            sync=self.sync,
            max_bytes=self.max_bytes or "",
            max_age=self.max_age or "",
        )
        if writer:
            self._thread = threading.Thread(
                target=self._write_loop, name="store-writer", daemon=True
            )
            self._thread.start()

    def _connect(self, path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if self.sync == 'full' else 'NORMAL'}")
        conn.execute("PRAGMA cache_size=-32768")
        return conn

    def close(self) -> None:
        """Finish what was submitted, stop the writer, close the files."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
        for conn in (self._seg, self._ids):
            if conn is not None:
                conn.close()
        self._seg = self._ids = None

    # -- writing ----------------------------------------------------------------------------

    def submit(self, items: list[Item]) -> asyncio.Future[Written]:
        """Store `items` (packets, in order); the future is done once they are committed —
        its `new` names the ones stored now (the others were stored before)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Written] = loop.create_future()

        def done(result: Written | BaseException) -> None:
            loop.call_soon_threadsafe(_settle, future, result)

        self._jobs.put(_Job(items, done))
        return future

    def write(self, items: list[Item]) -> Written:
        """Store `items` now, in this thread (a store opened without its writer)."""
        assert self._thread is None, "a store with a writer thread takes `submit`"
        (written,) = self._commit([_Job(items, lambda result: None)])
        return written

    def _write_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            jobs, packets = [job], len(job.items)
            stop = False
            while packets < MAX_BATCH_PACKETS:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                jobs.append(more)
                packets += len(more.items)
            self._write(jobs)
            if stop:
                return

    def _write(self, jobs: list[_Job]) -> None:
        try:
            results = self._commit(jobs)
        except Exception as exc:  # noqa: BLE001 - every failure is the requests' 503
            self.stats.failures += 1
            self.stats.last_error = str(exc)
            event(log, "store_write_failed", logging.ERROR, error=exc)
            error = StoreError(f"the store could not write: {exc}", retry_after=1.0)
            for job in jobs:
                job.done(error)
            return
        for job, result in zip(jobs, results, strict=True):
            job.done(result)
        if self.clock() - self._retained >= RETAIN_EVERY:
            self._retain_logged()

    def _commit(self, jobs: list[_Job]) -> list[Written]:
        assert self._ids is not None
        now = self.clock()
        self._roll(now)
        seg, ids_db = self._seg, self._ids
        assert seg is not None
        name = self.segments[-1].name
        # Which packets are new: not stored before, not twice in this batch.
        wanted = {pid for job in jobs for pid, _, _ in job.items}
        known: set[str] = set()
        listed = list(wanted)
        for start in range(0, len(listed), LOOKUP):
            chunk = listed[start : start + LOOKUP]
            marks = ",".join("?" * len(chunk))
            known.update(
                r[0]
                for r in ids_db.execute(f"SELECT packet FROM ids WHERE packet IN ({marks})", chunk)
            )
        received_ms = int(now * 1000)
        first_row = row = self._next_row
        rows: list[Row] = []
        ids: list[tuple[str, str, int]] = []
        results: list[Written] = []
        for job in jobs:
            new: list[int] = []
            counts: list[int] = []
            for position, (pid, emitter, line) in enumerate(job.items):
                if pid in known:
                    continue
                known.add(pid)
                packet = orjson.loads(line)
                packet["packetId"] = pid
                if emitter is not None:
                    packet["emitter"] = emitter
                made: list[Row] = rows_of(packet, received_ms, self._ts_cache)
                ids.append((pid, name, row))
                rows += made
                row += len(made)
                new.append(position)
                counts.append(len(made))
            results.append(Written(new, counts))
        if rows:
            ids_db.execute("BEGIN")
            try:
                ids_db.executemany("INSERT INTO ids VALUES (?, ?, ?)", ids)
                ids_db.execute("COMMIT")
            except BaseException:
                ids_db.execute("ROLLBACK")
                raise
            try:
                seg.execute("BEGIN")
                # Row ids are the next ones in order (rows are never deleted from a segment):
                # first_row … row - 1, as the ids say.
                seg.executemany(f"INSERT INTO logs({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", rows)
                (last,) = seg.execute("SELECT last_insert_rowid()").fetchone()
                if last != row - 1:
                    raise sqlite3.IntegrityError(f"rows numbered to {last}, expected {row - 1}")
                # The index and the counts from the rows just written, in SQLite's own loops.
                seg.execute(
                    "INSERT INTO fts(rowid, message) SELECT id, message FROM logs WHERE id >= ?",
                    (first_row,),
                )
                seg.execute(
                    "INSERT INTO rollup SELECT ts / 60000, level, count(*) FROM logs"
                    " WHERE id >= ? GROUP BY 1, 2"
                    " ON CONFLICT(minute, level) DO UPDATE SET n = n + excluded.n",
                    (first_row,),
                )
                seg.execute("COMMIT")
            except BaseException:
                if seg.in_transaction:
                    seg.execute("ROLLBACK")
                # The ids just committed point at rows that were not: take them back.
                ids_db.execute("DELETE FROM ids WHERE seg = ? AND row >= ?", (name, first_row))
                raise
            self._next_row = row
        stored = sum(len(r.new) for r in results)
        self.stats.batches += 1
        self.stats.packets += stored
        self.stats.messages += len(rows)
        self.held += len(rows)
        self.stats.duplicates += sum(len(j.items) for j in jobs) - stored
        return results

    def _roll(self, now: float) -> None:
        """Start a new segment when the current one is old enough (or big enough)."""
        current = self.segments[-1] if self.segments else None
        if current is not None and self._seg is not None:
            fresh = now - current.started < self.segment_seconds
            small = self.max_bytes is None or current.size() < self.max_bytes // 10
            if fresh and small:
                return
        number = _segment_number(current.name) + 1 if current is not None else 1
        name = _segment_name(number, now)
        path = self.dir / name
        conn = self._connect(path)
        conn.executescript(SCHEMA)
        if self._seg is not None:
            self._seg.close()
        self._seg = conn
        self._next_row = 1
        with self._lock:
            self.segments.append(Segment(name, path, now))
        event(log, "store_segment_started", segment=name)
        self._retain_logged()

    # -- retention --------------------------------------------------------------------------

    def _retain_logged(self) -> None:
        """Retention that never fails a write: what it could not remove is tried again."""
        try:
            self._retain()
        except (OSError, sqlite3.Error) as exc:
            event(log, "store_retention_failed", logging.ERROR, error=exc)

    def _retain(self) -> None:
        self._retained = self.clock()
        if self.max_bytes is None and self.max_age is None:
            return
        now = self.clock()
        while len(self.segments) > 1:
            oldest = self.segments[0]
            sizes = [s.size() for s in self.segments]
            reason = None
            if self.max_age is not None and now - self.segments[1].started > self.max_age:
                reason = "max_age"  # its last message arrived before the next began
            elif self.max_bytes is not None and sum(sizes) > self.max_bytes:
                reason = "max_bytes"
            if reason is None:
                return
            self._remove(oldest, sizes[0], reason)

    def _remove(self, segment: Segment, size: int, reason: str) -> None:
        assert self._ids is not None
        with closing(sqlite3.connect(f"file:{segment.path}?mode=ro", uri=True)) as conn:
            try:
                (messages,) = conn.execute("SELECT coalesce(max(id), 0) FROM logs").fetchone()
            except sqlite3.Error:
                messages = 0
        # Ids first: a crash after leaves rows without ids (the file goes at the next start),
        # never ids without rows.
        self._ids.execute("DELETE FROM ids WHERE seg = ?", (segment.name,))
        with self._lock:
            self.segments.remove(segment)
        self._spans.pop(segment.name, None)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{segment.path}{suffix}").unlink(missing_ok=True)
        self.stats.removed_segments += 1
        self.stats.removed_messages += messages
        self.held -= messages
        self.stats.removed_bytes += size
        event(
            log,
            "store_retention",
            logging.WARNING,
            segment=segment.name,
            messages=messages,
            bytes=size,
            reason=reason,
        )

    # -- reading ----------------------------------------------------------------------------

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

    def summary(self) -> dict[str, Any]:
        """For /stats: segments, bytes, messages held, what was written and removed."""
        segments = self._readable()
        s = self.stats
        return {
            "path": str(self.dir),
            "segments": len(segments),
            "bytes": sum(seg.size() for seg in segments),
            "messages": self.held,
            "stored_packets": s.packets,
            "stored_messages": s.messages,
            "duplicates": s.duplicates,
            "batches": s.batches,
            "failures": s.failures,
            "last_error": s.last_error,
            "removed": {
                "segments": s.removed_segments,
                "messages": s.removed_messages,
                "bytes": s.removed_bytes,
            },
            "sync": self.sync,
            "max_bytes": self.max_bytes,
            "max_age": self.max_age,
        }


def _clause(where: list[str]) -> str:
    return f" WHERE {' AND '.join(where)}" if where else ""


def _edge(conn: sqlite3.Connection, where: list[str], args: list[Any], last: bool) -> int | None:
    """The first (or last) `ts` matching `where`: one step along an index. (`SELECT min(ts),
    max(ts)` in one statement reads every row: SQLite's shortcut takes one of them alone.)"""
    order = "DESC" if last else "ASC"
    sql = f"SELECT ts FROM logs{_clause(where)} ORDER BY ts {order} LIMIT 1"
    found = conn.execute(sql, args).fetchone()
    return None if found is None else int(found[0])


def _settle(future: asyncio.Future[Written], result: Written | BaseException) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
