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

Reads (search, histogram, context: `reading.py`) run in threads of their own on read-only
connections, so
a slow query never holds the writer or the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from logdist.analyzer.reading import Reading
from logdist.analyzer.segments import (
    COLUMNS,
    IDS_SCHEMA,
    SCHEMA,
    Item,
    Segment,
    segment_name,
    segment_number,
    segment_start,
)
from logdist.errors import Backpressure
from logdist.events import event
from logdist.search.query import (
    Row,
    rows_of,
)

log = logging.getLogger("logdist.store")


# Packets a group commit takes at most; the rest wait for the next.
MAX_BATCH_PACKETS = 2_000
# Retention is looked at this often (seconds), and after every new segment.
RETAIN_EVERY = 5.0
# Packet ids looked up in one statement.
LOOKUP = 500


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


class Store(Reading):
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
        self.segments = [Segment(n, self.dir / n, segment_start(n)) for n in names]
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
        """One group commit: the jobs' new packets made rows, their ids committed, then the
        rows (with the index and the counts); what each job stored."""
        now = self.clock()
        self._roll(now)
        name = self.segments[-1].name
        known = self._known({pid for job in jobs for pid, _, _ in job.items})
        first_row = row = self._next_row
        rows: list[Row] = []
        ids: list[tuple[str, str, int]] = []
        results: list[Written] = []
        received_ms = int(now * 1000)
        for job in jobs:
            written = Written([], [])
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
                written.new.append(position)
                written.counts.append(len(made))
            results.append(written)
        if rows:
            self._insert(name, ids, rows, first_row, row)
            self._next_row = row
        stored = sum(len(r.new) for r in results)
        self.stats.batches += 1
        self.stats.packets += stored
        self.stats.messages += len(rows)
        self.held += len(rows)
        self.stats.duplicates += sum(len(j.items) for j in jobs) - stored
        return results

    def _known(self, wanted: set[str]) -> set[str]:
        """Which of the packet ids `wanted` the store holds already."""
        assert self._ids is not None
        known: set[str] = set()
        listed = list(wanted)
        for start in range(0, len(listed), LOOKUP):
            chunk = listed[start : start + LOOKUP]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT packet FROM ids WHERE packet IN ({marks})"
            known.update(r[0] for r in self._ids.execute(sql, chunk))
        return known

    def _insert(
        self, name: str, ids: list[tuple[str, str, int]], rows: list[Row], first: int, end: int
    ) -> None:
        """The ids committed, then rows `first` … `end` - 1 of segment `name` with their index
        and counts; if the rows fail, the ids just committed are taken back."""
        ids_db, seg = self._ids, self._seg
        assert ids_db is not None and seg is not None
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
            # first … end - 1, as the ids say.
            seg.executemany(f"INSERT INTO logs({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", rows)
            (last,) = seg.execute("SELECT last_insert_rowid()").fetchone()
            if last != end - 1:
                raise sqlite3.IntegrityError(f"rows numbered to {last}, expected {end - 1}")
            # The index and the counts from the rows just written, in SQLite's own loops.
            seg.execute(
                "INSERT INTO fts(rowid, message) SELECT id, message FROM logs WHERE id >= ?",
                (first,),
            )
            seg.execute(
                "INSERT INTO rollup SELECT ts / 60000, level, count(*) FROM logs"
                " WHERE id >= ? GROUP BY 1, 2"
                " ON CONFLICT(minute, level) DO UPDATE SET n = n + excluded.n",
                (first,),
            )
            seg.execute("COMMIT")
        except BaseException:
            if seg.in_transaction:
                seg.execute("ROLLBACK")
            # The ids just committed point at rows that were not: take them back.
            ids_db.execute("DELETE FROM ids WHERE seg = ? AND row >= ?", (name, first))
            raise

    def _roll(self, now: float) -> None:
        """Start a new segment when the current one is old enough (or big enough)."""
        current = self.segments[-1] if self.segments else None
        if current is not None and self._seg is not None:
            fresh = now - current.started < self.segment_seconds
            small = self.max_bytes is None or current.size() < self.max_bytes // 10
            if fresh and small:
                return
        number = segment_number(current.name) + 1 if current is not None else 1
        name = segment_name(number, now)
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


def _settle(future: asyncio.Future[Written], result: Written | BaseException) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
