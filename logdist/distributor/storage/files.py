"""The distributor's files, written one way: a file replaced whole (written aside, synced,
renamed over, directory synced), an append-only journal of records synced as its mode says,
and directory and file syncs. The spool, the runtime state and the dead letters all use these.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

# always: sync each append before it is answered; interval: `sync()` once a second; never: the
# OS decides. A killed process loses nothing in any mode; a power cut can.
FSYNC_MODES = ("always", "interval", "never")


def fsync_dir(path: Path) -> None:
    """The names created or deleted in directory `path` are on disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_paths(paths: list[Path]) -> None:
    """Sync files by name (one deleted meanwhile needs none)."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def replace_file(path: Path, data: bytes) -> None:
    """Make `path` hold `data`, whole or not at all, even across a power cut.

    The file is mode 0600 (mkstemp's): what the distributor keeps may hold secrets.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


class Journal:
    """An append-only file of records (mode 0600), opened at the first append, its directory
    synced when that created it."""

    def __init__(self, path: Path, fsync: str = "always") -> None:
        self.path = path
        self.fsync = fsync
        self._fd: int | None = None
        self._dirty = False

    def append(self, record: bytes) -> None:
        """Add `record`; with fsync = always it is on disk when this returns. OSError if it
        could not be written whole."""
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            if created:
                fsync_dir(self.path.parent)
        if os.write(self._fd, record) != len(record):
            raise OSError(errno.ENOSPC, f"short write to {self.path}")
        if self.fsync == "always":
            os.fsync(self._fd)
        elif self.fsync == "interval":
            self._dirty = True

    def sync(self) -> None:
        """With fsync = interval: sync what was appended since the last call."""
        if self._dirty and self._fd is not None:
            self._dirty = False
            os.fsync(self._fd)

    def close(self) -> None:
        """Close it, synced unless the mode is never; the next append opens it again."""
        if self._fd is not None:
            if self._dirty and self.fsync != "never":
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            self._dirty = False
