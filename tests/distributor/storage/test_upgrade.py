"""A spool, a state directory and dead letters left by the version before the reshape (made by
that version's own classes, commit de11fec, into tests/distributor/storage/v0) still load."""

from __future__ import annotations

import shutil
from pathlib import Path

from logdist.config import DistributorConfig
from logdist.core.registry import AdminState
from logdist.distributor.node import Distributor

V0 = Path(__file__).with_name("v0")


def test_the_previous_versions_files_load_into_a_distributor(tmp_path: Path) -> None:
    shutil.copytree(V0, tmp_path, dirs_exist_ok=True)
    cfg = DistributorConfig(
        spool_dir=str(tmp_path / "spool"),
        state_dir=str(tmp_path / "state"),
        dead_letter_dir=str(tmp_path / "dead-letters"),
        spool_segment_bytes=4096,
    )
    d = Distributor(cfg)
    try:
        a1, a2 = d.registry.get("a1"), d.registry.get("a2")
        assert (a1.weight, a1.admin) == (3.0, AdminState.ENABLED)
        assert a2.admin is AdminState.DISABLED  # the journal line over the snapshot
        assert (a2.delivery.format, a2.delivery.compression) == ("ndjson", "gzip")
        assert a2.delivery.headers == (("Authorization", "Bearer x"),)
        queued = [part for p in d.dispatcher.queue for part in p.parts()]
        assert [p.id for p in queued] == ["s1", "s2", "s3"]
        assert [p.messages for p in queued] == [1, 1, 2]
        assert d.counters.replayed == 3
        (letter,) = d.dead_letters.letters.values()
        assert (letter.id, letter.emitter) == ("d1", "e9")
        assert [(r.analyzer, r.status) for r in letter.refusals] == [("a1", 400), ("a2", 422)]
    finally:
        d.dead_letters.close()
        if d.state is not None:
            d.state.close()
