"""Paging, one way everywhere: an opaque cursor (the last key a page showed, as base64url JSON),
`limit` read and checked alike, and one answer shape, `{KEY: rows, "total"?, "next"}`, where
`next` is the cursor of the following page (null at the end). Search answers also carry it
as `cursor`, the key they had before."""

from __future__ import annotations

import base64
import binascii
import bisect
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from logdist.errors import InvalidRequest

PAGE_DEFAULT = 100
PAGE_MAX = 1000


def encode_cursor(key: Any) -> str:
    """The cursor after `key` (a string, or a list of JSON values)."""
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    """The key a cursor of `encode_cursor` holds; one this API did not give is a 422."""
    try:
        return orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise bad_cursor(cursor) from None


def bad_cursor(cursor: str) -> InvalidRequest:
    return InvalidRequest(
        f"cursor {cursor!r} is not one this API gave (pass `next` from the previous page)",
        {"field": "cursor"},
    )


def read_int(
    params: Mapping[str, str], name: str, default: int, low: int, high: int | None = None
) -> int:
    """A whole-number query parameter (`limit`, `n`, `buckets`), `default` when absent."""
    text = params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise InvalidRequest(
            f"{name} must be a whole number, got {text!r}", {"field": name}
        ) from None
    if value < low or (high is not None and value > high):
        between = f"between {low} and {high}" if high is not None else f">= {low}"
        raise InvalidRequest(f"{name} must be {between}, got {value}", {"field": name})
    return value


def read_limit(params: Mapping[str, str], default: int = PAGE_DEFAULT) -> int:
    return read_int(params, "limit", default, 1, PAGE_MAX)


def answer(key: str, rows: list[Any], total: int | None, after: str | None) -> dict[str, Any]:
    """One page as every paged route answers it."""
    page: dict[str, Any] = {key: rows}
    if total is not None:
        page["total"] = total
    page["next"] = after
    return page


def page(
    ids: list[str],
    row: Callable[[str], dict[str, Any] | None],
    limit: int = PAGE_DEFAULT,
    cursor: str | None = None,
    key: Callable[[str], tuple[Any, ...]] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Up to `limit` rows of the sorted `ids` after `cursor`, skipping those `row` gives None
    (filtered out); and the cursor of the next page, None at the end. With `key`, `ids` are
    sorted by it, and a cursor holds the key of the last row shown."""
    if not 1 <= limit <= PAGE_MAX:
        raise InvalidRequest(
            f"limit must be between 1 and {PAGE_MAX}, got {limit}", {"field": "limit"}
        )
    after = decode_cursor(cursor) if cursor else None
    if cursor and not isinstance(after, str if key is None else list):
        raise bad_cursor(cursor)
    if after is None:
        start = 0
    elif key is None:
        start = bisect.bisect_right(ids, after)
    else:
        try:
            start = bisect.bisect_right(ids, tuple(after), key=key)
        except TypeError:  # a key of other types than this order's
            raise bad_cursor(cursor or "") from None
    rows: list[dict[str, Any]] = []
    last: str | None = None
    for i in range(start, len(ids)):
        found = row(ids[i])
        if found is None:
            continue
        if len(rows) == limit:
            if last is None:
                return rows, None
            return rows, encode_cursor(last if key is None else list(key(last)))
        rows.append(found)
        last = ids[i]
    return rows, None
