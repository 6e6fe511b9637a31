"""The state directory: a snapshot plus a journal of changes, read back as it was left."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from logdist.core.delivery import Delivery
from logdist.core.registry import AdminState, Registry
from logdist.distributor.storage.state import MIN_FOLD, StateStore
from logdist.errors import ConfigError


def registry() -> Registry:
    return Registry(now=time.monotonic, rise=2, fall=3, max_pending=64)


def saved(directory: Path) -> list[tuple[str, str, float, str]]:
    rows = StateStore(directory).load()
    assert rows is not None
    return [(ref.id, ref.url, ref.weight, admin.value) for ref, admin in rows]


def test_every_kind_of_change_is_read_back_in_order(tmp_path: Path) -> None:
    reg, store = registry(), StateStore(tmp_path)
    assert store.load() is None
    for aid in ("a1", "a2", "a3"):
        reg.add(aid, f"http://127.0.0.1:9/{aid}", 1.0, Delivery())
        store.record(reg, aid)
    reg.set_weight("a1", 5.0)
    store.record(reg, "a1")
    reg.set_admin("a2", AdminState.DISABLED)
    store.record(reg, "a2")
    reg.remove("a3")
    store.record(reg, "a3")
    store.close()
    assert saved(tmp_path) == [
        ("a1", "http://127.0.0.1:9/a1", 5.0, "enabled"),
        ("a2", "http://127.0.0.1:9/a2", 1.0, "disabled"),
    ]
    assert not (tmp_path / "state.json").exists()  # three rows: nothing to fold yet


def test_adding_thousands_folds_the_journal_a_few_times_not_once_an_add(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reg, store = registry(), StateStore(tmp_path)
    caplog.set_level(logging.INFO, "logdist.state")
    for i in range(3000):
        aid = f"a{i:05d}"
        reg.add(aid, "http://127.0.0.1:9/ingest", 1.0, Delivery())
        store.record(reg, aid)
    snapshots = [r for r in caplog.records if "event=state_saved" in r.getMessage()]
    # The journal is folded when it outgrows the snapshot: at about 256, 512, 1,024, 2,048.
    assert [r.getMessage().rsplit("=", 1)[1] for r in snapshots] == ["257", "515", "1031", "2063"]
    assert len((tmp_path / "state.journal").read_bytes().splitlines()) == 3000 - 2063
    assert [row[0] for row in saved(tmp_path)] == [f"a{i:05d}" for i in range(3000)]


def test_many_changes_to_one_analyzer_keep_the_journal_short(tmp_path: Path) -> None:
    reg, store = registry(), StateStore(tmp_path)
    reg.add("a1", "http://127.0.0.1:9/ingest", 1.0, Delivery())
    for i in range(1, 1001):
        reg.set_weight("a1", float(i))
        store.record(reg, "a1")
    assert len((tmp_path / "state.journal").read_bytes().splitlines()) < MIN_FOLD
    assert saved(tmp_path) == [("a1", "http://127.0.0.1:9/ingest", 1000.0, "enabled")]


def test_a_line_cut_short_by_a_crash_is_dropped_and_the_next_change_kept(
    tmp_path: Path,
) -> None:
    reg, store = registry(), StateStore(tmp_path)
    reg.add("a1", "http://127.0.0.1:9/ingest", 1.0, Delivery())
    store.record(reg, "a1")
    store.close()
    with (tmp_path / "state.journal").open("ab") as f:
        f.write(b'{"analyzer": {"id": "a2", "ur')  # never synced, never answered
    again = StateStore(tmp_path)
    assert [ref.id for ref, _ in again.load() or []] == ["a1"]
    reg.set_weight("a1", 3.0)
    again.record(reg, "a1")
    again.close()
    assert saved(tmp_path) == [("a1", "http://127.0.0.1:9/ingest", 3.0, "enabled")]


def test_a_crash_between_the_snapshot_and_emptying_the_journal_changes_nothing(
    tmp_path: Path,
) -> None:
    reg, store = registry(), StateStore(tmp_path)
    for aid in ("a1", "a2"):
        reg.add(aid, f"http://127.0.0.1:9/{aid}", 1.0, Delivery())
        store.record(reg, aid)
    reg.remove("a1")
    store.record(reg, "a1")
    reg.add("a1", "http://127.0.0.1:9/back", 2.0, Delivery())
    store.record(reg, "a1")
    journal = (tmp_path / "state.journal").read_bytes()
    store.save(reg)  # the snapshot holds all of it ...
    (tmp_path / "state.journal").write_bytes(journal)  # ... the journal was not emptied
    assert saved(tmp_path) == [
        ("a2", "http://127.0.0.1:9/a2", 1.0, "enabled"),
        ("a1", "http://127.0.0.1:9/back", 2.0, "enabled"),
    ]


def test_a_damaged_journal_line_is_a_config_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "state.journal").write_bytes(b'{"removed": "a1"}\nnot json\n{"removed": "a2"}\n')
    with pytest.raises(ConfigError, match=r"state.journal:2: not a logdist state journal line"):
        StateStore(tmp_path).load()
