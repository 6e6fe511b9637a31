"""Searching stored logs, the pure part: rows from packets, query parameters, cursors, merging.

Stored messages are ordered by the key (ts, packetId, index), newest first. The key is the same
in every analyzer's store, so the distributor merges their answers into one order, copies of a
message stored by two analyzers (a packet delivered twice) sit side by side and are dropped as
one, and a cursor — the last key a page showed — means the same to every store.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from logdist.core import paging
from logdist.errors import InvalidRequest
from logdist.formats.records import LEVEL_NAMES

LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
LEVEL_NUMBER = {name: i for i, name in enumerate(LEVELS)}
# Any spelling a message may use, lower-cased, to its stored level.
_LEVEL_OF = {**{k: LEVEL_NUMBER[v] for k, v in LEVEL_NAMES.items()}}
# Levels as messages usually spell them, looked up before anything is normalised.
_EXACT_LEVEL = {
    **{name: n for name, n in LEVEL_NUMBER.items()},
    **{k: n for k, n in _LEVEL_OF.items()},
    **{k.capitalize(): n for k, n in _LEVEL_OF.items()},
    **{k.upper(): n for k, n in _LEVEL_OF.items()},
}
STANDARD = frozenset({"ts", "level", "service", "host", "message"})
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_BUCKETS = 1000
DEFAULT_BUCKETS = 60
MINUTE_MS = 60_000
# Bucket widths a histogram may take, in minutes: a round one with at most the buckets asked.
_WIDTHS = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080, 20160, 43200)
# Timestamps a store can hold (1970 … 9999), in ms.
MAX_TS = 253_402_300_799_999
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}

# One stored message: the columns of a row, in order.
Row = tuple[int, int, str, int, str | None, str | None, str | None, str, str | None]
# (ts, packetId, index): the order of search results (newest first).
Key = tuple[int, str, int]


def level_number(value: Any) -> tuple[int, Any]:
    """The stored level (0 TRACE … 5 FATAL) for a message's `level`, and the original value
    when it was not one of the names logdist knows (stored as INFO then)."""
    if value is None:
        return 2, None
    if isinstance(value, str):
        number = _LEVEL_OF.get(value.strip().lower())
        if number is not None:
            return number, None
    return 2, value


def ts_ms(value: Any, cache: dict[str, int]) -> int | None:
    """Milliseconds since the epoch for a message's `ts` (RFC 3339 text or epoch seconds),
    or None when it cannot be read. `cache` keeps text already read (logs repeat a second's
    stamp many times)."""
    if isinstance(value, str):
        ms = cache.get(value)
        if ms is None:
            try:
                moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                return None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            try:
                ms = math.floor(moment.timestamp() * 1000)
            except (OverflowError, ValueError):
                return None
            if not 0 <= ms <= MAX_TS:
                return None
            if len(cache) > 100_000:
                cache.clear()
            cache[value] = ms
        return ms
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return math.floor(value * 1000) if 0 <= value <= MAX_TS / 1000 else None


def rows_of(packet: dict[str, Any], received_ms: int, cache: dict[str, int]) -> list[Row]:
    """The rows of one packet's messages: (ts, level, packetId, index, emitter, service, host,
    message, fields JSON). A `ts` or `level` that cannot be read is kept in fields as
    `ts_raw` / `level_raw`, with the receive time / INFO in their place.

    Written for the usual message (a few standard fields, a level spelled as logdist spells
    it, a timestamp seen before): a store spends a few microseconds here per message.
    """
    pid = packet["packetId"]
    emitter = packet.get("emitter")
    emitter = emitter if type(emitter) is str else None
    rows: list[Row] = []
    append = rows.append
    standard = STANDARD
    levels = _EXACT_LEVEL
    for index, m in enumerate(packet["messages"]):
        if type(m) is not dict:  # checked at ingest; a stored packet is never refused
            m = {"message": m}
        extra = None if m.keys() <= standard else {k: v for k, v in m.items() if k not in standard}
        stamp = m.get("ts")
        ts = cache.get(stamp) if type(stamp) is str else None
        if ts is None:
            ts = ts_ms(stamp, cache)
            if ts is None:
                ts = received_ms
                if stamp is not None:
                    extra = extra or {}
                    extra["ts_raw"] = stamp
        spelled = m.get("level")
        level = levels.get(spelled) if type(spelled) is str else None
        if level is None:
            level, raw = level_number(spelled)
            if raw is not None:
                extra = extra or {}
                extra["level_raw"] = raw
        text = m.get("message")
        if type(text) is not str:
            text = "" if text is None else orjson.dumps(text).decode()
        service = m.get("service")
        host = m.get("host")
        append(
            (
                ts,
                level,
                pid,
                index,
                emitter,
                service if service is None or type(service) is str else _text(service),
                host if host is None or type(host) is str else _text(host),
                text,
                orjson.dumps(extra).decode() if extra else None,
            )
        )
    return rows


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


# -- queries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """What a search, a histogram or a context asks for; times in ms, `until` exclusive."""

    q: str | None = None
    since: int | None = None
    until: int | None = None
    levels: tuple[int, ...] = ()
    emitter: str | None = None
    service: str | None = None
    host: str | None = None
    analyzers: tuple[str, ...] = ()
    limit: int = DEFAULT_LIMIT
    # Results strictly after this key in the order asked (newest first, or oldest first).
    cursor: Key | None = None
    ascending: bool = False
    buckets: int = DEFAULT_BUCKETS

    @property
    def only_time_and_level(self) -> bool:
        """Whether a histogram can be read from the per-minute counts alone."""
        return (
            self.q is None and self.emitter is None and self.service is None and (self.host is None)
        )

    def params(self) -> dict[str, str]:
        """The query as URL parameters, as `parse_query` reads them (for asking a store)."""
        out: dict[str, str] = {}
        if self.q is not None:
            out["q"] = self.q
        if self.since is not None:
            out["since"] = str(self.since)
        if self.until is not None:
            out["until"] = str(self.until)
        if self.levels:
            out["level"] = ",".join(LEVELS[n] for n in self.levels)
        for name in ("emitter", "service", "host"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out["limit"] = str(self.limit)
        if self.cursor is not None:
            out["cursor"] = encode_cursor(self.cursor)
        if self.ascending:
            out["order"] = "asc"
        out["buckets"] = str(self.buckets)
        return out


def invalid(name: str, message: str) -> InvalidRequest:
    """A bad parameter: a 422 whose message and detail name it."""
    return InvalidRequest(f"{name}: {message}", {"field": name})


def duration_ms(text: str) -> int | None:
    """Milliseconds for a duration (`500ms`, `30s`, `15m`, `2h`, `7d`, `1w`, `1h30m`), or None
    when `text` is not one."""
    pos, total = 0, 0.0
    for m in _RELATIVE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_MS[m.group(2)]
        pos = m.end()
    return int(total) if pos and pos == len(text) else None


def parse_time(name: str, text: str, now_ms: int) -> int:
    """RFC 3339, epoch milliseconds, or a duration back from now (`15m`, `2h`, `7d`, `1h30m`)."""
    text = text.strip()
    if text.isdigit():
        value = int(text)
        if value > MAX_TS:
            raise invalid(name, f"{text} is past the year 9999 (epoch milliseconds expected)")
        return value
    back = duration_ms(text)
    if back is not None:
        return max(0, now_ms - back)
    ms = ts_ms(text, {})
    if ms is None:
        raise invalid(
            name,
            f"cannot read {text!r}: give RFC 3339 (2026-12-02T10:00:00Z), epoch milliseconds "
            "or a duration back from now (30s, 15m, 2h, 7d)",
        )
    return ms


def parse_query(params: Mapping[str, str], now_ms: int) -> Query:
    """A Query from URL parameters; a bad one is an InvalidRequest naming it (a 422)."""
    known = {
        "q",
        "since",
        "until",
        "level",
        "emitter",
        "service",
        "host",
        "analyzer",
        "limit",
        "cursor",
        "order",
        "buckets",
        "token",
    }
    for name in params:
        if name not in known:
            raise invalid(name, f"unknown parameter; known: {', '.join(sorted(known - {'token'}))}")
    query = Query()
    q = params.get("q", "").strip()
    if q:
        if len(q) > 1000:
            raise invalid("q", "longer than 1,000 characters")
        query = replace(query, q=q)
    since = until = None
    if params.get("since"):
        since = parse_time("since", params["since"], now_ms)
    if params.get("until"):
        until = parse_time("until", params["until"], now_ms)
    if since is not None and until is not None and since >= until:
        raise invalid("until", "must be later than since")
    levels: list[int] = []
    for word in params.get("level", "").split(","):
        if not word.strip():
            continue
        number = LEVEL_NUMBER.get(word.strip().upper())
        if number is None:
            number = _LEVEL_OF.get(word.strip().lower())
        if number is None:
            raise invalid("level", f"unknown level {word.strip()!r}; known: {', '.join(LEVELS)}")
        if number not in levels:
            levels.append(number)
    analyzers = tuple(a.strip() for a in params.get("analyzer", "").split(",") if a.strip())
    limit = paging.read_int(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    buckets = paging.read_int(params, "buckets", DEFAULT_BUCKETS, 1, MAX_BUCKETS)
    order = params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid("order", f"must be asc or desc, got {order!r}")
    cursor = decode_cursor(params["cursor"]) if params.get("cursor") else None
    fields = {n: params[n] for n in ("emitter", "service", "host") if params.get(n)}
    return replace(
        query,
        since=since,
        until=until,
        levels=tuple(sorted(levels)),
        analyzers=analyzers,
        limit=limit,
        buckets=buckets,
        cursor=cursor,
        ascending=order == "asc",
        **fields,
    )


def parse_context(params: Mapping[str, str]) -> tuple[str, int, int, int]:
    """(packetId, index, before, after) of a context request; a bad one is a 422 naming it."""
    known = {"packetId", "index", "before", "after", "token"}
    for name in params:
        if name not in known:
            raise invalid(name, "unknown parameter; known: packetId, index, before, after")
    packet = params.get("packetId", "")
    if not packet:
        raise invalid("packetId", "required: the packetId of the message")
    if params.get("index") is None:
        raise invalid("index", "required: the message's index in its packet")
    index = paging.read_int(params, "index", 0, 0, 1_000_000)
    before = paging.read_int(params, "before", 20, 0, MAX_LIMIT)
    after = paging.read_int(params, "after", 20, 0, MAX_LIMIT)
    return packet, index, before, after


def encode_cursor(key: Key) -> str:
    return paging.encode_cursor(list(key))


def decode_cursor(text: str) -> Key:
    key = paging.decode_cursor(text)
    if isinstance(key, list) and len(key) == 3:
        ts, pid, index = key
        if isinstance(ts, int) and isinstance(pid, str) and isinstance(index, int):
            return ts, pid, index
    raise paging.bad_cursor(text)


def page_answer(
    items: list[dict[str, Any]], after: str | None, partial: list[Any]
) -> dict[str, Any]:
    """A page of stored messages: `next` as every paged answer has it, and `cursor`, the key
    search answers had first (the same value)."""
    return {**paging.answer("items", items, None, after), "cursor": after, "partial": partial}


# -- answers ----------------------------------------------------------------------------------


def item_key(item: Mapping[str, Any]) -> tuple[str, str, int]:
    """An answer item's place in the order: its `ts` is always `iso` text (fixed width, so
    it sorts as the time does)."""
    return item["ts"], item["packetId"], item["index"]


def cursor_after(item: Mapping[str, Any]) -> str:
    """The cursor for the page after `item`."""
    ms = ts_ms(item["ts"], {})
    assert ms is not None
    return encode_cursor((ms, item["packetId"], item["index"]))


def merge(
    pages: Iterable[list[dict[str, Any]]], limit: int, ascending: bool
) -> list[dict[str, Any]]:
    """Items from several stores' pages (each in order) in one order, a message stored twice
    shown once (by packetId and index), at most `limit`."""
    ordered: Iterator[dict[str, Any]] = heapq.merge(*pages, key=item_key, reverse=not ascending)
    out: list[dict[str, Any]] = []
    last: tuple[str, str, int] | None = None
    for item in ordered:
        key = item_key(item)
        if key == last:
            continue
        last = key
        out.append(item)
        if len(out) == limit:
            break
    return out


def iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def bucket_plan(since: int, until: int, buckets: int) -> tuple[int, int, int]:
    """(first bucket's start, width in ms, count): round widths (1 min, 5 min, 1 h …) aligned
    to the minute, the fewest buckets of the smallest width that covers [since, until) in at
    most `buckets` (past 30 days a bucket, as many as it takes)."""
    start = since - since % MINUTE_MS
    span = until - start
    for minutes in _WIDTHS:
        width = minutes * MINUTE_MS
        if math.ceil(span / width) <= buckets:
            break
    else:
        width = math.ceil(span / buckets / MINUTE_MS) * MINUTE_MS
    if width >= 1440 * MINUTE_MS:
        start -= start % (1440 * MINUTE_MS)  # days from midnight UTC
        span = until - start
    count = max(1, math.ceil(span / width))
    return start, width, count


def histogram_body(
    since: int, until: int, buckets: int, counts: Mapping[tuple[int, int], int]
) -> dict[str, Any]:
    """The answer's shape from counts by (bucket number, level)."""
    start, width, count = bucket_plan(since, until, buckets)
    by_bucket: list[dict[str, int]] = [{} for _ in range(count)]
    for (bucket, level), n in sorted(counts.items()):
        if n and 0 <= bucket < count:
            by_bucket[bucket][LEVELS[level]] = n
    out = [
        {"start": iso(start + b * width), "end": iso(start + (b + 1) * width), "counts": row}
        for b, row in enumerate(by_bucket)
    ]
    return {"since": iso(since), "until": iso(until), "buckets": out, "total": sum(counts.values())}
