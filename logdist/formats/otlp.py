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
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs

from logdist.errors import InvalidPacket, MalformedJSON
from logdist.formats.outbound import STANDARD, epoch_ns, records, text
from logdist.formats.packet import Made, Packet, envelope, opened_envelope
from logdist.formats.records import level_of, packets_of, rfc3339

EMITTER = "otlp"
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


def otlp_kept(body: bytes, kind: str, peer: str, received: datetime) -> list[Made]:
    """One export request kept as it came: its envelope (see `formats.packet.envelope`), with
    an id from the request's bytes (an exporter's retry of it is deduplicated downstream)
    and its record count; nothing when it holds no records. Its records are not made into
    messages here: that is done only for an analyzer that does not take OTLP."""
    request = decode(body, kind)
    count = sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
    if not count:
        return []
    raw = body if kind == "protobuf" else request.SerializeToString()
    pid = f"otlp-{hashlib.blake2b(body, digest_size=12).hexdigest()}"
    return [(pid, count, envelope(pid, count, raw, peer, rfc3339(received)))]


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


def set_value(out: AnyValue, value: Any) -> None:
    """`value` (JSON-like) into `out`."""
    if isinstance(value, str):
        out.string_value = value
    elif isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        if -(1 << 63) <= value < 1 << 63:
            out.int_value = value
        else:
            out.string_value = str(value)
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, list):
        array = out.array_value
        for item in value:
            set_value(array.values.add(), item)
    elif isinstance(value, dict):
        kvlist = out.kvlist_value
        for key, item in value.items():
            kv = kvlist.values.add()
            kv.key = str(key)
            set_value(kv.value, item)


def _put(attrs: Any, key: str, value: Any) -> None:
    kv = attrs.add()
    kv.key = key
    set_value(kv.value, value)


def _hex_bytes(value: Any, size: int) -> bytes:
    if isinstance(value, str) and len(value) == 2 * size:
        try:
            return bytes.fromhex(value)
        except ValueError:
            return b""
    return b""


def encode_request(bodies: list[bytes], now_ns: int) -> tuple[bytes, int]:
    """One ExportLogsServiceRequest of every message, a ResourceLogs per service, host and
    resource, as protobuf; and how many records it holds."""
    request = ExportLogsServiceRequest()
    scopes: dict[tuple[str, str, bytes, str], Any] = {}
    count = 0
    for message, pid, emitter, index in records(bodies):
        count += 1
        service, host = text(message.get("service")), text(message.get("host"))
        resource = message.get("resource")
        resource = resource if isinstance(resource, dict) else {}
        scope = message.get("scope")
        scope = scope if isinstance(scope, str) and scope else "logdist"
        key = (service, host, orjson.dumps(resource) if resource else b"", scope)
        sl = scopes.get(key)
        if sl is None:
            rl: ResourceLogs = request.resource_logs.add()
            attrs = rl.resource.attributes
            if service:
                _put(attrs, "service.name", service)
            if host:
                _put(attrs, "host.name", host)
            for k, v in resource.items():
                _put(attrs, k, v)
            sl = scopes[key] = rl.scope_logs.add()
            sl.scope.name = scope
        r: LogRecord = sl.log_records.add()
        ns = epoch_ns(message.get("ts"))
        if ns is not None:
            r.time_unix_nano = ns
        r.observed_time_unix_nano = now_ns
        level = message.get("level")
        number = message.get("severity_number")
        if not (isinstance(number, int) and 0 < number <= 24):
            number = SEVERITY_NUMBERS.get(level if isinstance(level, str) else "", 0)
        r.severity_number = number  # type: ignore[assignment]  # an int is a SeverityNumber
        severity = message.get("severity_text")
        r.severity_text = severity if isinstance(severity, str) else text(level)
        set_value(r.body, text(message.get("message")))
        r.trace_id = _hex_bytes(message.get("trace_id"), 16)
        r.span_id = _hex_bytes(message.get("span_id"), 8)
        attrs = r.attributes
        own = message.get("attributes")
        if isinstance(own, dict):
            for k, v in own.items():
                _put(attrs, k, v)
        for k, v in message.items():
            if k not in STANDARD and k not in FROM_OTLP:
                _put(attrs, k, v)
        if emitter is not None:
            _put(attrs, "logdist.emitter", emitter)
        _put(attrs, "logdist.packet_id", pid)
        _put(attrs, "logdist.index", index)
    return request.SerializeToString(), count


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
