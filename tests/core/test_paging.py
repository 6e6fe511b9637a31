"""One way to page: cursors, limits and the answer's shape."""

from __future__ import annotations

import pytest

from logdist.core import paging
from logdist.errors import InvalidRequest

IDS = [f"a{i:02d}" for i in range(25)]


def test_pages_walk_every_id_once_in_order() -> None:
    seen: list[str] = []
    cursor = None
    while True:
        rows, cursor = paging.page(IDS, lambda i: {"id": i}, 10, cursor)
        seen += [r["id"] for r in rows]
        if cursor is None:
            break
    assert seen == IDS


def test_filtered_rows_are_skipped_and_the_last_page_has_no_next() -> None:
    rows, after = paging.page(IDS, lambda i: {"id": i} if i.endswith("3") else None, 2)
    assert [r["id"] for r in rows] == ["a03", "a13"] and after is not None
    rows, after = paging.page(IDS, lambda i: {"id": i} if i.endswith("3") else None, 2, after)
    assert [r["id"] for r in rows] == ["a23"] and after is None


@pytest.mark.parametrize("key", ["a07", [1733000000000, "p1", 3]])
def test_a_cursor_gives_back_its_key(key: object) -> None:
    assert paging.decode_cursor(paging.encode_cursor(key)) == key


@pytest.mark.parametrize("cursor", ["%%%", "bm90IGpzb24"])
def test_a_cursor_this_api_did_not_give_is_a_422_naming_it(cursor: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        paging.decode_cursor(cursor)
    assert caught.value.detail == {"field": "cursor"}


@pytest.mark.parametrize(
    ("params", "expected"),
    [({}, 100), ({"limit": ""}, 100), ({"limit": "1"}, 1), ({"limit": "1000"}, 1000)],
)
def test_limit_defaults_and_bounds(params: dict[str, str], expected: int) -> None:
    assert paging.read_limit(params) == expected


@pytest.mark.parametrize("raw", ["0", "1001", "ten", "-3"])
def test_a_bad_limit_is_a_422_naming_it(raw: str) -> None:
    with pytest.raises(InvalidRequest, match="limit must be") as caught:
        paging.read_limit({"limit": raw})
    assert caught.value.detail == {"field": "limit"}


def test_every_page_answers_alike() -> None:
    assert paging.answer("emitters", [], 0, None) == {"emitters": [], "total": 0, "next": None}
    assert paging.answer("items", [1], None, "c") == {"items": [1], "next": "c"}
