"""Full-text queries are checked as SQLite's FTS5 reads them, before any store is asked."""

from __future__ import annotations

import pytest

from logdist.errors import InvalidRequest
from logdist.search.fts import check_fts


@pytest.mark.parametrize("q", [None, "payment", '"payment refused"', "pay*", "a NOT b", "x OR y"])
def test_queries_fts5_reads_pass(q: str | None) -> None:
    check_fts(q)


@pytest.mark.parametrize("q", ['"unclosed', "AND", "a AND", "(a", "*x"])
def test_a_query_fts5_cannot_read_is_a_422_naming_q(q: str) -> None:
    with pytest.raises(InvalidRequest, match="not a full-text query") as caught:
        check_fts(q)
    assert caught.value.detail == {"field": "q"}
