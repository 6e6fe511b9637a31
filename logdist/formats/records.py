"""Flat JSON log records (what Fluent Bit's `http` output and Vector's `http` sink post) made
into ordinary logdist packets. Pure: no I/O.

A body is a JSON array of records, one record, or NDJSON (one record a line). Each record
becomes a message with the standard fields, taken from the first of these present:

- `message`: `message`, `log`, `msg` (a string; any other value as its JSON)
- `ts`: `ts`, `date`, `timestamp`, `@timestamp`, `time` — seconds since the epoch (a number, as
  Fluent Bit's default `json_date_format double` sends) or a date string, made RFC 3339 UTC;
  missing or unreadable: the time it was received (an unreadable one kept as `ts_raw`)
- `level`: `level`, `severity` — TRACE, DEBUG, INFO, WARN, ERROR or FATAL (`warning` → WARN,
  `err` → ERROR, `critical`/`crit`/`emerg`/`alert`/`panic` → FATAL, `notice`/`information` →
  INFO); missing: INFO; anything else: INFO with the original kept as `level_raw`
- `service`: `service`; `host`: `host`, `hostname` (missing: "")

The record's other fields are kept as they are, beside those (one named like a standard field
that could not be used, such as a `host` that is not a string, as `host_raw`). A request's
records travel in packets of up to RECORDS_PER_PACKET messages whose ids derive from the
request's bytes, so a shipper's retry of the same request is deduplicated downstream.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson

from logdist.errors import InvalidPacket, MalformedJSON
from logdist.formats.packet import Made, Packet, parse_packet

RECORDS_PER_PACKET = 500
EMITTER = "records"
MESSAGE_KEYS = ("message", "log", "msg")
TS_KEYS = ("ts", "date", "timestamp", "@timestamp", "time")
LEVEL_KEYS = ("level", "severity")
HOST_KEYS = ("host", "hostname")
LEVEL_NAMES = {
    "trace": "TRACE",
    "debug": "DEBUG",
    "info": "INFO",
    "information": "INFO",
    "informational": "INFO",
    "notice": "INFO",
    "warn": "WARN",
    "warning": "WARN",
    "error": "ERROR",
    "err": "ERROR",
    "fatal": "FATAL",
    "critical": "FATAL",
    "crit": "FATAL",
    "emerg": "FATAL",
    "emergency": "FATAL",
    "alert": "FATAL",
    "panic": "FATAL",
}
STANDARD = frozenset({"ts", "level", "service", "host", "message"})
# Seconds since the epoch accepted as a timestamp (1970 … 9999).
MAX_EPOCH = 253_402_300_799.0


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _first(record: dict[str, Any], keys: tuple[str, ...]) -> tuple[str | None, Any]:
    for key in keys:
        if key in record:
            return key, record[key]
    return None, None


def level_of(value: Any) -> tuple[str, Any]:
    """The standard level for `value`, and the original when it was not understood."""
    if value is None:
        return "INFO", None
    if isinstance(value, str):
        name = LEVEL_NAMES.get(value.strip().lower())
        if name is not None:
            return name, None
    return "INFO", value


def ts_of(value: Any, received: datetime) -> tuple[str, Any]:
    """RFC 3339 UTC for `value` (epoch seconds or a date string), and the original when it
    could not be read (the receive time is used then)."""
    if value is None:
        return rfc3339(received), None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if 0 <= value <= MAX_EPOCH:
                return rfc3339(datetime.fromtimestamp(value, UTC)), None
        elif isinstance(value, str):
            text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)  # a date without a zone is taken as UTC
            return rfc3339(moment), None
    except (ValueError, OverflowError):  # not a date, or one UTC cannot hold (year 0)
        pass
    return rfc3339(received), value


def message_of(record: dict[str, Any], received: datetime) -> dict[str, Any]:
    """One record as a logdist message: the standard fields first, then the record's others."""
    out: dict[str, Any] = {}
    used: set[str] = set()
    key, value = _first(record, TS_KEYS)
    used.add(key or "")
    out["ts"], ts_raw = ts_of(value, received)
    key, value = _first(record, LEVEL_KEYS)
    used.add(key or "")
    out["level"], level_raw = level_of(value)
    service = record.get("service")
    out["service"] = service if isinstance(service, str) else ""
    used.add("service" if isinstance(service, str) else "")
    key, value = _first(record, HOST_KEYS)
    out["host"] = value if isinstance(value, str) else ""
    used.add(key if isinstance(value, str) and key else "")
    key, value = _first(record, MESSAGE_KEYS)
    used.add(key or "")
    if value is None:
        out["message"] = ""
    else:
        out["message"] = value if isinstance(value, str) else orjson.dumps(value).decode()
    for name, field in record.items():
        if name not in used:
            # A field named like a standard one that could not be used (a host that is not a
            # string, a second time key) is kept under NAME_raw, never dropped.
            out[f"{name}_raw" if name in STANDARD else name] = field
    if ts_raw is not None:
        out["ts_raw"] = ts_raw
    if level_raw is not None:
        out["level_raw"] = level_raw
    return out


def parse_records(body: bytes) -> list[dict[str, Any]]:
    """The records of a body: a JSON array of objects, one object, or NDJSON."""
    text = body.strip()
    if not text:
        raise InvalidPacket("the body holds no records")
    labels: list[str]
    if text[:1] == b"[" or b"\n" not in text:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise MalformedJSON(f"the body is not valid JSON: {exc}") from None
        items = value if isinstance(value, list) else [value]
        labels = (
            [f"record [{i}]" for i in range(len(items))]
            if isinstance(value, list)
            else ["the body"]
        )
    else:
        items, labels = [], []
        for lineno, line in enumerate(text.split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise MalformedJSON(f"line {lineno} is not valid JSON: {exc}") from None
            labels.append(f"line {lineno}")
    if not items:
        raise InvalidPacket("the body holds no records")
    for item, label in zip(items, labels, strict=True):
        if not isinstance(item, dict):
            kind = "null" if item is None else type(item).__name__
            raise InvalidPacket(f"{label} must be a JSON object (a log record), got {kind}")
    return items


def records_packets(body: bytes, received: datetime, emitter: str = EMITTER) -> list[Packet]:
    """The packets one request of records makes (ids from the request's bytes)."""
    return packets_of([message_of(r, received) for r in parse_records(body)], "rec", emitter, body)


def packets_of(
    messages: list[dict[str, Any]], prefix: str, emitter: str, body: bytes
) -> list[Packet]:
    """`messages` of one request in packets of up to RECORDS_PER_PACKET, with ids derived
    from the request's bytes so that a client's retry of it is deduplicated downstream."""
    digest = hashlib.blake2b(body, digest_size=12).hexdigest()
    return [
        parse_packet(
            {
                "packetId": f"{prefix}-{digest}-{n}",
                "emitter": emitter,
                "messages": messages[start : start + RECORDS_PER_PACKET],
            }
        )
        for n, start in enumerate(range(0, len(messages), RECORDS_PER_PACKET))
    ]


def records_made(body: bytes, received: datetime, emitter: str = EMITTER) -> list[Made]:
    """`records_packets` as (id, messages, body, None) tuples: what a parse process hands back."""
    return [(p.id, p.messages, p.body, None) for p in records_packets(body, received, emitter)]
