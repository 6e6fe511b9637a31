"""Runtime admin changes kept across restarts: analyzers, weights, admin states and delivery
settings (header values in clear: the files are mode 0600).

`DIR/state.json` is a snapshot; each change after it is one line appended to
`DIR/state.journal` (the analyzer's whole row, or its removal) and synced before the change is
answered. When the journal outgrows the snapshot it is folded into a new snapshot and emptied,
so a change costs one short append however many analyzers there are (rewriting the snapshot on
every change made adding 10,000 analyzers quadratic: 3,000 took 26 s of the event loop).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import orjson

from logdist.config.refs import AnalyzerRef, analyzer_of, analyzer_row
from logdist.core.registry import AdminState, Registry
from logdist.distributor.storage.files import Journal, replace_file
from logdist.errors import ConfigError, InvalidRequest
from logdist.events import event

log = logging.getLogger("logdist.state")

# 1: id, url, weight, state; 2: and delivery settings (format, headers, health_url, health,
# compression). Both are read.
VERSION = 2
# The journal is folded into the snapshot past this many lines or the snapshot's row count,
# whichever is larger: replaying it stays as cheap as reading the snapshot.
MIN_FOLD = 256


class StateStore:
    """`DIR/state.json` and its journal `DIR/state.journal`."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.path = self.dir / "state.json"
        self.journal = self.dir / "state.journal"
        self._lines = 0  # in the journal
        self._rows = 0  # in the snapshot
        self._appender = Journal(self.journal, "always")

    def load(self) -> list[tuple[AnalyzerRef, AdminState]] | None:
        """The saved analyzers, or None when nothing was saved yet."""
        rows: dict[str, dict[str, Any]] | None = None
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot read: {exc}") from None
        else:
            try:
                data = orjson.loads(raw)
                assert data["version"] in (1, VERSION)
                rows = {a["id"]: a for a in data["analyzers"]}
            except (orjson.JSONDecodeError, AssertionError, KeyError, TypeError) as exc:
                raise ConfigError(
                    f"{self.path}: not a logdist state file ({exc!r}); move it away to start afresh"
                ) from None
            self._rows = len(rows)
        rows = self._replay(rows)
        if rows is None:
            return None
        try:
            return [analyzer_of(a) for a in rows.values()]
        except InvalidRequest as exc:
            raise ConfigError(f"{self.dir}: {exc.message}; fix or move the files away") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"{self.dir}: not logdist state ({exc!r}); move state.json and state.journal "
                "away to start afresh"
            ) from None

    def _replay(self, rows: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]] | None:
        try:
            raw = self.journal.read_bytes()
        except FileNotFoundError:
            return rows
        except OSError as exc:
            raise ConfigError(f"{self.journal}: cannot read: {exc}") from None
        rows = {} if rows is None else rows
        lines = raw.split(b"\n")
        if torn := lines.pop():
            # A last line without its newline was cut short by a crash before it was synced:
            # that change was never answered. Cut it off, so the next change starts a line.
            os.truncate(self.journal, len(raw) - len(torn))
            event(log, "state_journal_torn", logging.WARNING, path=self.journal)
        for number, line in enumerate(lines, 1):
            try:
                change = orjson.loads(line)
                if "removed" in change:
                    rows.pop(change["removed"], None)
                else:
                    row = change["analyzer"]
                    rows[row["id"]] = row
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                raise ConfigError(
                    f"{self.journal}:{number}: not a logdist state journal line ({exc!r}); "
                    "move it away to start from state.json"
                ) from None
            self._lines += 1
        return rows

    def record(self, registry: Registry, aid: str) -> None:
        """Keep the change to `aid` (its row as it is now, or its removal), synced."""
        if self._lines >= max(MIN_FOLD, self._rows):
            self.save(registry)
            return
        change = (
            {"analyzer": analyzer_row(registry.get(aid))} if aid in registry else {"removed": aid}
        )
        self._appender.append(orjson.dumps(change) + b"\n")
        self._lines += 1

    def save(self, registry: Registry) -> None:
        """A new snapshot of every analyzer; the journal is emptied after it."""
        rows = [analyzer_row(a) for a in registry]
        data = {"version": VERSION, "analyzers": rows}
        self.dir.mkdir(parents=True, exist_ok=True)
        # The headers in it are secrets: replace_file makes it 0600.
        replace_file(self.path, orjson.dumps(data, option=orjson.OPT_INDENT_2))
        # A crash before this truncation replays the journal over the snapshot that already
        # holds it: each line sets a whole row or removes it, so the result is the same.
        self._appender.close()
        self.journal.unlink(missing_ok=True)
        self._rows, self._lines = len(rows), 0
        event(log, "state_saved", path=self.path, analyzers=self._rows)

    def close(self) -> None:
        self._appender.close()
