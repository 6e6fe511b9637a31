"""Full-text queries as SQLite's FTS5 reads them: checked before any store is asked."""

from __future__ import annotations

import sqlite3
import threading

from logdist.search.query import invalid

_checker = threading.local()


def check_fts(q: str | None) -> None:
    """A 422 naming `q` when SQLite's FTS5 cannot read it (asked of an empty index, so that
    an error from a segment's query is never the user's)."""
    if q is None:
        return
    conn = getattr(_checker, "conn", None)
    if conn is None:
        conn = _checker.conn = sqlite3.connect(":memory:", check_same_thread=False)
        conn.execute("CREATE VIRTUAL TABLE fts USING fts5(message)")
    try:
        conn.execute("SELECT rowid FROM fts WHERE fts MATCH ?", (q,)).fetchall()
    except sqlite3.OperationalError as exc:
        raise invalid(
            "q",
            f'not a full-text query ({exc}): use words, "a phrase", prefix*, AND, OR, NOT',
        ) from None
