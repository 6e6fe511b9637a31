"""Runtime admin changes kept across restarts: analyzers, weights and admin states."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import orjson

from logdist.config import AnalyzerRef
from logdist.core.registry import AdminState, Registry
from logdist.errors import ConfigError
from logdist.log import event

log = logging.getLogger("logdist.state")

VERSION = 1


class StateStore:
    """`DIR/state.json`, replaced atomically (write, fsync, rename) on every admin change."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.path = self.dir / "state.json"

    def load(self) -> list[tuple[AnalyzerRef, AdminState]] | None:
        """The saved analyzers, or None when nothing was saved yet."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot read: {exc}") from None
        try:
            data = orjson.loads(raw)
            assert data["version"] == VERSION
            return [
                (AnalyzerRef(a["id"], a["url"], float(a["weight"])), AdminState(a["state"]))
                for a in data["analyzers"]
            ]
        except (orjson.JSONDecodeError, AssertionError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"{self.path}: not a logdist state file ({exc!r}); move it away to start afresh"
            ) from None

    def save(self, registry: Registry) -> None:
        data: dict[str, Any] = {
            "version": VERSION,
            "analyzers": [
                {"id": a.id, "url": a.url, "weight": a.weight, "state": a.admin.value}
                for a in registry
            ],
        }
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".state.", dir=self.dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        event(log, "state_saved", path=self.path, analyzers=len(data["analyzers"]))
