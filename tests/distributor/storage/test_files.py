"""The one journal and the one whole-file replace that the spool, state and dead letters use."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from logdist.distributor.storage import files
from logdist.distributor.storage.files import Journal, replace_file


def test_a_journal_is_private_and_appends_across_reopening(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "sub" / "j.log")
    journal.append(b"one\n")
    journal.close()
    journal.append(b"two\n")
    journal.close()
    path = tmp_path / "sub" / "j.log"
    assert path.read_bytes() == b"one\ntwo\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it may hold secrets (headers)


@pytest.mark.parametrize(("mode", "at_append", "at_sync"), [("always", 1, 0), ("interval", 0, 1)])
def test_a_journal_syncs_as_its_mode_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, at_append: int, at_sync: int
) -> None:
    synced: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    journal = Journal(tmp_path / "j.log", mode)
    journal.append(b"x\n")
    appended = len(synced) - 1  # the directory is synced once, when the file is created
    journal.sync()
    assert (appended, len(synced) - 1 - appended) == (at_append, at_sync)
    journal.close()


def test_a_replaced_file_is_whole_and_its_directory_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dirs: list[Path] = []
    monkeypatch.setattr(files, "fsync_dir", lambda path: dirs.append(path))
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    replace_file(target, b"new")
    assert target.read_bytes() == b"new" and dirs == [tmp_path]
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # nothing left aside
