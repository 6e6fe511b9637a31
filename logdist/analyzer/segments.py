"""The store's files: the schema of a segment and of the ids database, and how segments are
named (numbered, with the second each began)."""

from __future__ import annotations

import os
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

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

# One packet handed to the store: its id, its emitter, its JSON object.
Item = tuple[str, str | None, bytes]


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


def segment_name(number: int, at: float) -> str:
    """`seg-NUMBER-START.db`: numbered in order (names sort as they were made), with the UTC
    second the segment began."""
    return f"seg-{number:08d}-{datetime.fromtimestamp(at, UTC):%Y%m%dT%H%M%S}.db"


def segment_start(name: str) -> float:
    stamp = name.removesuffix(".db").rsplit("-", 1)[1]
    return datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(tzinfo=UTC).timestamp()


def segment_number(name: str) -> int:
    return int(name.split("-")[1])
