"""Packets made into the requests of the analyzers people run (docs/outputs.md has the
exact mapping). Pure: no I/O; the distributor runs these in its parse processes.

Every encoder takes the bodies of a batch's packets (a run's lines joined by newlines) and
writes one record per message, in order: the packets in turn, each one's messages in turn. A
record's place in that order is how an answer that speaks per record (an Elasticsearch
`_bulk` item, a Splunk HEC event number) is matched back to its message.

A message's `ts`, `level`, `service`, `host` and `message` are its standard fields; the
packet gives `emitter`, `packetId` and the message's index in the packet (a part of a packet,
made when an analyzer took only some of its messages, lists its messages' original indexes
as `indexes`, so a retried record keeps its identity). Every other field of a message is
free-form and travels beside them; one named like a field the mapping writes itself is kept
with `_` before its name.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

STANDARD = frozenset({"ts", "level", "service", "host", "message"})
# A message's place: (message, packetId, emitter, index in its packet).
Record = tuple[dict[str, Any], str, str | None, int]


def packets_in(bodies: list[bytes]) -> Iterator[dict[str, Any]]:
    loads = orjson.loads
    for body in bodies:
        if b"\n" in body:
            for line in body.split(b"\n"):
                yield loads(line)
        else:
            yield loads(body)


def records(bodies: list[bytes]) -> Iterator[Record]:
    """Every message of the batch with its packet's id and emitter and its index."""
    for packet in packets_in(bodies):
        pid, emitter = packet.get("packetId", ""), _emitter(packet)
        for index, message in _indexed(packet):
            yield message, pid, emitter, index


def text(value: Any) -> str:
    """A field as text: a string as it is, anything else as its JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return orjson.dumps(value).decode()


def free_fields(
    message: dict[str, Any], taken: frozenset[str], into: dict[str, Any]
) -> dict[str, Any]:
    """`into` with the message's free-form fields added (a taken name gets `_` before it)."""
    for key, value in message.items():
        if key in STANDARD:
            continue
        into["_" + key if key in taken else key] = value
    return into


# -- time -------------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# `ts` strings read lately: a batch's messages share a handful of them.
_NANOS: dict[str, int | None] = {}


def epoch_ns(ts: Any) -> int | None:
    """`ts` as nanoseconds since the epoch: an RFC 3339 / ISO 8601 string (no zone: UTC) or
    a number of seconds; None when it is neither."""
    if isinstance(ts, str):
        if ts in _NANOS:
            return _NANOS[ts]
        try:
            moment = datetime.fromisoformat(ts)
        except ValueError:
            ns = None
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            delta = moment - _EPOCH
            ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
        if len(_NANOS) >= 4096:
            _NANOS.clear()
        _NANOS[ts] = ns
        return ns
    if isinstance(ts, (int, float)) and not isinstance(ts, bool) and 0 <= ts < 253_402_300_800:
        return int(ts * 1_000_000_000)
    return None


_SECONDS: dict[int, str] = {}


def clickhouse_time(seconds: int) -> str:
    """`YYYY-MM-DD hh:mm:ss` in UTC: what a ClickHouse DateTime column reads."""
    out = _SECONDS.get(seconds)
    if out is None:
        out = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        _SECONDS[seconds] = out
    return out


def rfc3339_ns(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    return clickhouse_time(seconds).replace(" ", "T") + f".{rest // 1_000_000:03d}Z"


def timestamp(ts: Any, style: str) -> Any:
    """`ts` written as `style` says (records' `timestamp_format`); as it was when unreadable."""
    if style == "rfc3339" and isinstance(ts, str):
        return ts
    ns = epoch_ns(ts)
    if ns is None:
        return ts
    if style == "unix":
        return ns // 1_000_000 / 1000
    if style == "unix_ms":
        return ns // 1_000_000
    if style == "clickhouse":
        return clickhouse_time(ns // 1_000_000_000)
    return rfc3339_ns(ns)


# -- records: one flat JSON object a line -----------------------------------------------------

RECORD_TAKEN = frozenset({"emitter", "packetId", "index"})


def _renamed(message: dict[str, Any], taken: frozenset[str]) -> dict[str, Any]:
    """`message` with its free-form fields named like a mapped one given a `_` before."""
    for key in taken & message.keys():
        message["_" + key] = message.pop(key)
    return message


def encode_records(bodies: list[bytes], timestamp_format: str) -> tuple[bytes, int]:
    """NDJSON, one flat message a line; the body and how many records it holds. The message
    itself is the row (it was just read, and is nobody else's): its `ts` rewritten, the
    packet's fields added."""
    dumps = orjson.dumps
    convert = timestamp_format != "rfc3339"
    lines = []
    for packet in packets_in(bodies):
        pid, emitter = packet.get("packetId", ""), _emitter(packet)
        for index, message in _indexed(packet):
            if RECORD_TAKEN & message.keys():
                _renamed(message, RECORD_TAKEN)
            if convert:
                message["ts"] = timestamp(message.get("ts"), timestamp_format)
            message["emitter"] = emitter
            message["packetId"] = pid
            message["index"] = index
            lines.append(dumps(message))
    lines.append(b"")
    return b"\n".join(lines), len(lines) - 1


def _emitter(packet: dict[str, Any]) -> str | None:
    emitter = packet.get("emitter")
    return emitter if isinstance(emitter, str) else None


def _indexed(packet: dict[str, Any]) -> Any:
    """(index, message) of each message of a packet read."""
    messages = packet["messages"]
    indexes = packet.get("indexes")
    if isinstance(indexes, list) and len(indexes) == len(messages):
        return zip(indexes, messages, strict=True)
    return enumerate(messages)


# `ts` strings as RFC 3339 UTC to the millisecond, lately: a batch shares a handful.
_STAMPS: dict[Any, Any] = {}


def rfc3339_of(ts: Any) -> Any:
    """`ts` as RFC 3339 UTC to the millisecond; as it was when unreadable."""
    try:
        return _STAMPS[ts]
    except (KeyError, TypeError):
        pass
    ns = epoch_ns(ts)
    out = rfc3339_ns(ns) if ns is not None else ts
    if isinstance(ts, str):
        if len(_STAMPS) >= 4096:
            _STAMPS.clear()
        _STAMPS[ts] = out
    return out


# -- Elasticsearch / OpenSearch _bulk ---------------------------------------------------------

ES_TAKEN = frozenset({"@timestamp", "log", "logdist"})


def document_id(pid: str, index: int) -> str:
    """A record's `_id`: the same on every retry, so a second `create` finds it stored."""
    return f"{pid}:{index}"


def encode_bulk(bodies: list[bytes], index_name: str) -> tuple[bytes, int]:
    """`create` action and document pairs, NDJSON."""
    dumps = orjson.dumps
    head = b'{"create":{"_index":%s,"_id":' % dumps(index_name)
    lines = []
    for packet in packets_in(bodies):
        pid, emitter = packet.get("packetId", ""), _emitter(packet)
        for index, message in _indexed(packet):
            doc = {
                "@timestamp": rfc3339_of(message.get("ts")),
                "message": text(message.get("message")),
                "log": {"level": message.get("level")},
                "service": {"name": message.get("service")},
                "host": {"name": message.get("host")},
                "logdist": {"emitter": emitter, "packetId": pid, "index": index},
            }
            if len(message.keys() - STANDARD):
                free_fields(message, ES_TAKEN, doc)
            lines.append(head + dumps(document_id(pid, index)) + b"}}")
            lines.append(dumps(doc))
    count = len(lines) // 2
    lines.append(b"")
    return b"\n".join(lines), count


# -- Splunk HEC -------------------------------------------------------------------------------

HEC_TAKEN = frozenset({"logdist"})


def encode_hec(
    bodies: list[bytes],
    index_name: str | None,
    source: str | None,
    sourcetype: str,
    host: str | None,
) -> tuple[bytes, int]:
    """HEC event objects, one a line (HEC reads them concatenated)."""
    dumps = orjson.dumps
    lines = []
    for packet in packets_in(bodies):
        pid, emitter = packet.get("packetId", ""), _emitter(packet)
        for index, message in _indexed(packet):
            ns = epoch_ns(message.get("ts"))
            event = {
                "message": message.get("message"),
                "level": message.get("level"),
                "service": message.get("service"),
                "logdist": {"emitter": emitter, "packetId": pid, "index": index},
            }
            out: dict[str, Any] = {}
            if ns is not None:
                out["time"] = ns // 1_000_000 / 1000
            out["host"] = host if host is not None else text(message.get("host"))
            out["source"] = source if source is not None else text(message.get("service"))
            out["sourcetype"] = sourcetype
            if index_name is not None:
                out["index"] = index_name
            if len(message.keys() - STANDARD):
                free_fields(message, HEC_TAKEN, event)
            out["event"] = event
            lines.append(dumps(out))
    lines.append(b"")
    return b"\n".join(lines), len(lines) - 1


# -- Grafana Loki push ------------------------------------------------------------------------


def label_string(labels: tuple[tuple[str, str], ...]) -> str:
    """A stream's labels as Loki writes them in its answers: `{a="x", b="y"}`, sorted."""
    inner = ", ".join(
        '{}="{}"'.format(k, v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n"))
        for k, v in sorted(labels)
    )
    return "{" + inner + "}"


def _labels(names: tuple[str, ...], values: tuple[Any, ...]) -> tuple[tuple[str, str], ...]:
    """A stream's labels: the fields that have a value, as text (none: `job="logdist"`)."""
    labels = tuple(
        (name, text(value))
        for name, value in zip(names, values, strict=True)
        if value not in (None, "")
    )
    return labels or (("job", "logdist"),)


def encode_loki(
    bodies: list[bytes], label_fields: tuple[str, ...], now_ns: int
) -> tuple[bytes, int, list[tuple[str, int]]]:
    """A push of one stream per label set; the body, the records, and each record's stream
    (its labels as Loki writes them) and timestamp, in record order, to read a 400 by."""
    streams: dict[tuple[tuple[str, str], ...], list[list[Any]]] = {}
    names: dict[tuple[tuple[str, str], ...], str] = {}
    keys: list[tuple[str, int]] = []
    takes_emitter = "emitter" in label_fields
    seen: dict[tuple[Any, ...], tuple[tuple[str, str], ...]] = {}
    skip = frozenset(label_fields) | {"ts", "message"}
    for packet in packets_in(bodies):
        pid, emitter = packet.get("packetId", ""), _emitter(packet)
        for index, message in _indexed(packet):
            values = {**message, "emitter": emitter} if takes_emitter else message
            raw = tuple(map(values.get, label_fields))
            try:
                labels = seen[raw]
            except KeyError:
                labels = _labels(label_fields, raw)
                if len(seen) < 4096:
                    seen[raw] = labels
            except TypeError:  # a label field holds an object: its JSON is the value
                labels = _labels(label_fields, raw)
            ns = epoch_ns(message.get("ts"))
            if ns is None:
                ns = now_ns
            meta = {"emitter": emitter or "", "packetId": pid, "index": str(index)}
            for key in message.keys() - skip:
                value = message[key]
                meta["_" + key if key in meta else key] = (
                    value if isinstance(value, str) else text(value)
                )
            entry = [str(ns), text(message.get("message")), meta]
            stream = streams.get(labels)
            if stream is None:
                stream = streams[labels] = []
                names[labels] = label_string(labels)
            stream.append(entry)
            keys.append((names[labels], ns))
    body = orjson.dumps(
        {"streams": [{"stream": dict(labels), "values": v} for labels, v in streams.items()]}
    )
    return body, len(keys), keys
