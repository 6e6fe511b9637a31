"""OTLP/HTTP logs (`POST /v1/logs`) made into ordinary logdist packets. Pure: no I/O.

Bodies are decoded with the OpenTelemetry project's generated classes (`opentelemetry-proto`):
`application/x-protobuf` directly, `application/json` (the OTLP/JSON mapping: lowerCamelCase,
hex trace and span ids, 64-bit integers as strings, unknown fields ignored) through protobuf's
own JSON parser once the hex ids are made what it expects. Each log record becomes a message:

- `ts`: `timeUnixNano`, else `observedTimeUnixNano`, as RFC 3339 UTC (else the receive time)
- `level`: `severityText` if it names a level, else from `severityNumber` (1-4 TRACE, 5-8
  DEBUG, 9-12 INFO, 13-16 WARN, 17-20 ERROR, 21-24 FATAL), else INFO
- `service`: the resource's `service.name`; `host`: its `host.name`, else the peer's address
- `message`: the body — a string, or the JSON of any other value
- kept: `attributes` (the record's), `resource` (the resource's other attributes), `scope`
  (the instrumentation scope's name), `trace_id` and `span_id` (hex), `severity_number`,
  `severity_text`, when present

A request's records travel in packets as `records.packets_of` makes them: ids from the
request's bytes, so an exporter's retry of the same request is deduplicated downstream.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from datetime import UTC, datetime
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from logdist.errors import InvalidPacket, MalformedJSON
from logdist.formats.outbound import STANDARD, epoch_ns, records, text
from logdist.formats.packet import Made, Packet, envelope, opened_envelope
from logdist.formats.records import level_of, packets_of, rfc3339

EMITTER = "otlp"
# An emitter name made of a resource attribute is cut to this many characters.
EMITTER_MAX = 200
SEVERITY = ((4, "TRACE"), (8, "DEBUG"), (12, "INFO"), (16, "WARN"), (20, "ERROR"), (24, "FATAL"))


def decode(body: bytes, kind: str) -> ExportLogsServiceRequest:
    """The request in `body`, `kind` being "protobuf" or "json"; a 400 when it does not decode."""
    request = ExportLogsServiceRequest()
    if kind == "protobuf":
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise MalformedJSON(
                f"the body is not an OTLP ExportLogsServiceRequest: {exc}"
            ) from None
        return request
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(f"the body is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidPacket("an OTLP/JSON body is an object with resourceLogs")
    try:
        _hex_ids_to_base64(obj)
        json_format.ParseDict(obj, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
        raise InvalidPacket(f"the body is not an OTLP ExportLogsServiceRequest: {exc}") from None
    return request


def _hex_ids_to_base64(obj: dict[str, Any]) -> None:
    """OTLP/JSON writes trace and span ids in hex; protobuf's JSON mapping reads bytes as base64."""
    for rl in obj.get("resourceLogs") or ():
        for sl in (rl or {}).get("scopeLogs") or ():
            for record in (sl or {}).get("logRecords") or ():
                for key in ("traceId", "spanId"):
                    value = record.get(key) if isinstance(record, dict) else None
                    if isinstance(value, str) and value:
                        record[key] = base64.b64encode(bytes.fromhex(value)).decode()


def value_of(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        return v.double_value
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    if kind == "array_value":
        return [value_of(x) for x in v.array_value.values]
    return {kv.key: value_of(kv.value) for kv in v.kvlist_value.values}


def attributes(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kv: KeyValue
    for kv in kvs:
        out[kv.key] = value_of(kv.value)
    return out


# Seconds since the epoch made RFC 3339 (without the fraction) lately: a request's records are
# mostly of the same few seconds, and formatting a date costs microseconds.
_SECONDS: dict[int, str] = {}


def _ts(nanos: int, received: datetime) -> str:
    if nanos <= 0:
        return rfc3339(received)
    seconds, rest = divmod(nanos, 1_000_000_000)
    prefix = _SECONDS.get(seconds)
    if prefix is None:
        try:
            prefix = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        except (ValueError, OverflowError, OSError):
            return rfc3339(received)
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        _SECONDS[seconds] = prefix
    return f"{prefix}.{rest // 1_000_000:03d}Z"


_LEVELS: dict[tuple[str, int], str] = {}


def _level(text: str, number: int) -> str:
    key = (text, number)
    level = _LEVELS.get(key)
    if level is None:
        level = _level_of(text, number)
        if len(_LEVELS) < 1024:  # severity texts are few; a sender inventing them is not cached
            _LEVELS[key] = level
    return level


def _level_of(text: str, number: int) -> str:
    if text:
        level, raw = level_of(text)
        if raw is None:
            return level
    for upper, name in SEVERITY:
        if 0 < number <= upper:
            return name
    return "INFO"


def messages(
    request: ExportLogsServiceRequest, peer: str, received: datetime
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for rl in request.resource_logs:
        resource = attributes(rl.resource.attributes)
        service = resource.pop("service.name", "")
        host = resource.pop("host.name", "")
        service = service if isinstance(service, str) else str(service)
        host = host if isinstance(host, str) and host else peer
        for sl in rl.scope_logs:
            scope = sl.scope.name
            for r in sl.log_records:
                body = value_of(r.body)
                if not isinstance(body, str):
                    body = "" if body is None else orjson.dumps(body).decode()
                message: dict[str, Any] = {
                    "ts": _ts(r.time_unix_nano or r.observed_time_unix_nano, received),
                    "level": _level(r.severity_text, r.severity_number),
                    "service": service,
                    "host": host,
                    "message": body,
                }
                if r.attributes:
                    message["attributes"] = attributes(r.attributes)
                if resource:
                    message["resource"] = resource
                if scope:
                    message["scope"] = scope
                if r.trace_id:
                    message["trace_id"] = r.trace_id.hex()
                if r.span_id:
                    message["span_id"] = r.span_id.hex()
                if r.severity_number:
                    message["severity_number"] = int(r.severity_number)
                if r.severity_text:
                    message["severity_text"] = r.severity_text
                out.append(message)
    return out


def otlp_packets(body: bytes, kind: str, peer: str, received: datetime) -> list[Packet]:
    """The packets of one export request (none when it holds no records)."""
    return packets_of(messages(decode(body, kind), peer, received), "otlp", EMITTER, body)


def otlp_kept(
    body: bytes, kind: str, peer: str, received: datetime, key: str = "service.name"
) -> list[Made]:
    """One export request kept as it came: its envelope (see `formats.packet.envelope`), with
    an id from the request's bytes (an exporter's retry of it is deduplicated downstream)
    and its record count; nothing when it holds no records. Its records are not made into
    messages here: that is done only for an analyzer that does not take OTLP. It is from
    the emitter `otlp:VALUE`, VALUE its first resource's attribute `key` (else its peer)."""
    request = decode(body, kind)
    count = sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
    if not count:
        return []
    raw = body if kind == "protobuf" else request.SerializeToString()
    pid = f"otlp-{hashlib.blake2b(body, digest_size=12).hexdigest()}"
    name = emitter_of(request, key) or peer
    emitter = f"{EMITTER}:{name}"[:EMITTER_MAX] if name else EMITTER
    return [(pid, count, envelope(pid, count, raw, peer, rfc3339(received), emitter), emitter)]


def emitter_of(request: ExportLogsServiceRequest, key: str) -> str | None:
    """The value of the first resource attribute `key` that is a string, if any."""
    for rl in request.resource_logs:
        for kv in rl.resource.attributes:
            if kv.key == key and kv.value.WhichOneof("value") == "string_value":
                return str(kv.value.string_value)
    return None


def unwrap(body: bytes) -> bytes:
    """An envelope made into an ordinary packet: its records as messages (as `messages`
    makes them), under the envelope's packet id."""
    raw, pid, peer, received = opened_envelope(body)
    request = decode(raw, "protobuf")
    moment = datetime.fromisoformat(received)
    return orjson.dumps(
        {"packetId": pid, "emitter": EMITTER, "messages": messages(request, peer, moment)}
    )


# -- out: messages as an ExportLogsServiceRequest ---------------------------------------------

# A level's severityNumber: the first of its range in the OTLP data model.
SEVERITY_NUMBERS = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17, "FATAL": 21}
# Free-form fields an OTLP input made (see `messages`), written back where they came from.
FROM_OTLP = frozenset(
    {"attributes", "resource", "scope", "trace_id", "span_id", "severity_number", "severity_text"}
)
NOT_ATTRIBUTES = STANDARD | FROM_OTLP


# The protobuf wire format of the few messages written (opentelemetry/proto/logs/v1 and
# common/v1), by hand: several times faster than building the generated classes' objects.
_FIXED64 = struct.Struct("<Q")
_DOUBLE = struct.Struct("<d")
_INT64 = 1 << 63


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _BYTE[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_BYTE = [bytes((i,)) for i in range(256)]


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag byte, the payload's length, the payload."""
    return tag + _varint(len(payload)) + payload


def any_value(value: Any) -> bytes:
    """`value` (JSON-like) as an AnyValue's encoding."""
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        if -_INT64 <= value < _INT64:
            return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
        return _field(b"\x0a", str(value).encode())
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, list):
        return _field(b"\x2a", b"".join([_field(b"\x0a", any_value(v)) for v in value]))
    if isinstance(value, dict):
        return _field(
            b"\x32", b"".join([_field(b"\x0a", key_value(str(k), v)) for k, v in value.items()])
        )
    return b""


def key_value(key: str, value: Any) -> bytes:
    return _field(b"\x0a", key.encode()) + _field(b"\x12", any_value(value))


def _attribute(key: str, value: Any) -> bytes:
    """A LogRecord's (or Resource's) attribute: field 6 (a Resource's is field 1)."""
    return _field(b"\x32", key_value(key, value))


def _hex_bytes(value: Any, size: int) -> bytes:
    if isinstance(value, str) and len(value) == 2 * size:
        try:
            return bytes.fromhex(value)
        except ValueError:
            return b""
    return b""


def _severity(level: Any, number: Any, text_: Any) -> bytes:
    """A record's severityNumber and severityText fields."""
    if not (isinstance(number, int) and 0 < number <= 24):
        number = SEVERITY_NUMBERS.get(level if isinstance(level, str) else "", 0)
    severity = text_ if isinstance(text_, str) else text(level)
    out = b"\x10" + _varint(number) if number else b""
    return out + _field(b"\x1a", severity.encode()) if severity else out


def encode_request(bodies: list[bytes], now_ns: int) -> tuple[bytes, int]:
    """One ExportLogsServiceRequest of every message, a ResourceLogs per service, host,
    resource and scope, as protobuf; and how many records it holds."""
    groups: dict[tuple[str, str, bytes, str], list[bytes]] = {}
    resources: dict[tuple[str, str, bytes, str], dict[str, Any]] = {}
    observed = b"\x59" + _FIXED64.pack(now_ns)
    severities: dict[tuple[Any, Any, Any], bytes] = {}
    indexes: dict[int, bytes] = {}
    last_pid: str | None = None
    own_attrs = b""
    count = 0
    for message, pid, emitter, index in records(bodies):
        count += 1
        service, host = text(message.get("service")), text(message.get("host"))
        resource = message.get("resource")
        resource = resource if isinstance(resource, dict) else {}
        scope = message.get("scope")
        scope = scope if isinstance(scope, str) and scope else "logdist"
        key = (service, host, orjson.dumps(resource) if resource else b"", scope)
        out = groups.get(key)
        if out is None:
            out = groups[key] = []
            resources[key] = resource
        ns = epoch_ns(message.get("ts"))
        parts = [b"\x09" + _FIXED64.pack(ns)] if ns is not None else []
        sev_key = (
            message.get("level"),
            message.get("severity_number"),
            message.get("severity_text"),
        )
        try:
            severity = severities[sev_key]
        except (KeyError, TypeError):
            severity = _severity(*sev_key)
            if len(severities) < 256 and not isinstance(sev_key[2], (dict, list)):
                severities[sev_key] = severity
        parts.append(severity)
        body = message.get("message")
        parts.append(
            _field(
                b"\x2a", _field(b"\x0a", (body if isinstance(body, str) else text(body)).encode())
            )
        )
        own = message.get("attributes")
        if isinstance(own, dict):
            parts += [_attribute(str(k), v) for k, v in own.items()]
        for k in message.keys() - NOT_ATTRIBUTES:
            parts.append(_attribute(k, message[k]))
        if pid is not last_pid:  # the packet's own attributes, made once a packet
            last_pid = pid
            own_attrs = _attribute("logdist.packet_id", pid)
            if emitter is not None:
                own_attrs = _attribute("logdist.emitter", emitter) + own_attrs
        at = indexes.get(index)
        if at is None:
            at = _attribute("logdist.index", index)
            if len(indexes) < 4096:
                indexes[index] = at
        parts.append(own_attrs)
        parts.append(at)
        if "trace_id" in message or "span_id" in message:
            trace = _hex_bytes(message.get("trace_id"), 16)
            if trace:
                parts.append(_field(b"\x4a", trace))
            span = _hex_bytes(message.get("span_id"), 8)
            if span:
                parts.append(_field(b"\x52", span))
        parts.append(observed)
        out.append(_field(b"\x12", b"".join(parts)))
    pieces = []
    for key, logs in groups.items():
        service, host, _, scope = key
        attrs = []
        if service:
            attrs.append(_field(b"\x0a", key_value("service.name", service)))
        if host:
            attrs.append(_field(b"\x0a", key_value("host.name", host)))
        attrs += [_field(b"\x0a", key_value(k, v)) for k, v in resources[key].items()]
        scope_logs = _field(b"\x0a", _field(b"\x0a", scope.encode())) + b"".join(logs)
        resource_logs = _field(b"\x0a", b"".join(attrs)) + _field(b"\x12", scope_logs)
        pieces.append(_field(b"\x0a", resource_logs))
    return b"".join(pieces), count


def rejected(body: bytes) -> tuple[int, str]:
    """An export answer's `partial_success`: how many records it rejected, and why. Raises
    DecodeError when the body is not an ExportLogsServiceResponse."""
    answer = ExportLogsServiceResponse()
    answer.ParseFromString(body)
    partial = answer.partial_success
    return int(partial.rejected_log_records), partial.error_message


def unwrap_all(bodies: list[bytes]) -> list[bytes]:
    """`unwrap` of each envelope: the call a parse process makes for a batch."""
    return [unwrap(body) for body in bodies]
