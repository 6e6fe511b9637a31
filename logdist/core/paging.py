"""Paging a large, id-ordered collection with an opaque cursor (emitters, analyzers)."""

from __future__ import annotations

import base64
import binascii
import bisect
from collections.abc import Callable
from typing import Any

from logdist.errors import InvalidRequest

PAGE_DEFAULT = 100
PAGE_MAX = 1000


def encode_cursor(after: str) -> str:
    return base64.urlsafe_b64encode(after.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest(
            f"cursor {cursor!r} is not one this distributor gave", {"field": "cursor"}
        ) from None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= PAGE_MAX:
        raise InvalidRequest(f"limit must be 1-{PAGE_MAX}, got {limit}", {"field": "limit"})
    return limit


def page(
    ids: list[str],
    row: Callable[[str], dict[str, Any] | None],
    limit: int = PAGE_DEFAULT,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Up to `limit` rows of the sorted `ids` after `cursor`, skipping those `row` gives None
    (filtered out); and the cursor of the next page, None at the end."""
    check_limit(limit)
    start = bisect.bisect_right(ids, decode_cursor(cursor)) if cursor else 0
    rows: list[dict[str, Any]] = []
    last: str | None = None
    for i in range(start, len(ids)):
        found = row(ids[i])
        if found is None:
            continue
        if len(rows) == limit:
            return rows, encode_cursor(last) if last is not None else None
        rows.append(found)
        last = ids[i]
    return rows, None
