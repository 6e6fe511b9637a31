"""Runtime admin changes kept across restarts: analyzers, weights, admin states and delivery
settings (header values in clear: the file is mode 0600)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson

from logdist.config import AnalyzerRef
from logdist.core.delivery import delivery_from
from logdist.core.registry import AdminState, Registry
from logdist.distributor.files import replace_file
from logdist.errors import ConfigError, InvalidRequest
from logdist.log import event

log = logging.getLogger("logdist.state")

# 1: id, url, weight, state; 2: and delivery settings (format, headers, health_url, health,
# compression). Both are read.
VERSION = 2


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
            assert data["version"] in (1, VERSION)
            return [
                (
                    AnalyzerRef(
                        a["id"], a["url"], float(a["weight"]), delivery_from(a.get("delivery", {}))
                    ),
                    AdminState(a["state"]),
                )
                for a in data["analyzers"]
            ]
        except InvalidRequest as exc:
            raise ConfigError(f"{self.path}: {exc.message}; fix or move the file away") from None
        except (orjson.JSONDecodeError, AssertionError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"{self.path}: not a logdist state file ({exc!r}); move it away to start afresh"
            ) from None

    def save(self, registry: Registry) -> None:
        data: dict[str, Any] = {
            "version": VERSION,
            "analyzers": [
                {
                    "id": a.id,
                    "url": a.url,
                    "weight": a.weight,
                    "state": a.admin.value,
                    "delivery": a.delivery.to_state(),
                }
                for a in registry
            ],
        }
        self.dir.mkdir(parents=True, exist_ok=True)
        # The headers in it are secrets: replace_file makes it 0600.
        replace_file(self.path, orjson.dumps(data, option=orjson.OPT_INDENT_2))
        event(log, "state_saved", path=self.path, analyzers=len(data["analyzers"]))
