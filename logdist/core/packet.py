"""Packet validation and framing: what is accepted, and the exact bytes that are forwarded."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from logdist.errors import InvalidPacket, MalformedJSON

MAX_ID_LENGTH = 128


def new_packet_id() -> str:
    return str(uuid.uuid4())


@dataclass(slots=True)
class Packet:
    """One accepted packet: its id, who sent it, how many messages, and its JSON bytes.

    `body` is one JSON object on one line, exactly what is forwarded; the emitter's own
    bytes are kept whenever they already are that, so nothing is re-serialised.
    """

    id: str
    emitter: str | None
    messages: int
    body: bytes
    attempts: int = 0
    last_failed: str | None = None
    # The spool segment holding it (-1: not spooled).
    segment: int = -1


def _type_name(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def decode_json(body: bytes, where: str = "body") -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(f"{where} is not valid JSON: {exc}") from None


def parse_packet(
    obj: Any, raw: bytes | None = None, new_id: Callable[[], str] = new_packet_id
) -> Packet:
    """Check `obj` is a packet and frame it; `raw` is its source bytes if it came alone.

    A packet is any JSON object whose `messages` is a non-empty list of objects; every other
    field is kept verbatim. A missing `packetId` is assigned.
    """
    if not isinstance(obj, dict):
        raise InvalidPacket(f"a packet must be a JSON object, got {_type_name(obj)}")
    messages = obj.get("messages")
    if messages is None:
        raise InvalidPacket("packet has no 'messages' field (a non-empty list of objects)")
    if not isinstance(messages, list):
        raise InvalidPacket(f"'messages' must be a list of objects, got {_type_name(messages)}")
    if not messages:
        raise InvalidPacket("'messages' is empty: a packet carries at least one message")
    for i, message in enumerate(messages):
        if type(message) is not dict:
            raise InvalidPacket(f"messages[{i}] must be an object, got {_type_name(message)}")
    pid = obj.get("packetId")
    if pid is None:
        pid = obj["packetId"] = new_id()
        raw = None
    elif not isinstance(pid, str) or not pid or len(pid) > MAX_ID_LENGTH:
        raise InvalidPacket(
            f"'packetId' must be a non-empty string of at most {MAX_ID_LENGTH} characters,"
            f" got {_type_name(pid)}"
        )
    emitter = obj.get("emitter")
    if raw is not None:
        raw = raw.strip()
    body = raw if raw is not None and b"\n" not in raw else orjson.dumps(obj)
    return Packet(
        id=pid,
        emitter=emitter if isinstance(emitter, str) else None,
        messages=len(messages),
        body=body,
    )


class _Message(msgspec.Struct, gc=False):
    """A message as the router sees it: some JSON object (its fields are skipped, not built)."""


class _Shape(msgspec.Struct, gc=False):
    """What routing reads of a packet; every other field is validated JSON and left in place."""

    messages: list[_Message]
    packetId: str | None = None  # noqa: N815 - the wire name
    emitter: str | None = None


_decode_shape = msgspec.json.Decoder(_Shape).decode


def parse_line(raw: bytes, new_id: Callable[[], str] = new_packet_id) -> Packet:
    """One packet from its JSON bytes, building only what routing needs.

    The common packet (an id, an emitter name, messages that are objects) is read by msgspec
    without building its messages; anything else goes the full way through `parse_packet`,
    which assigns a missing id or raises the error that says what is wrong.
    """
    try:
        shape = _decode_shape(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return parse_packet(decode_json(raw), raw, new_id)
    pid = shape.packetId
    count = len(shape.messages)
    if pid is None or not pid or len(pid) > MAX_ID_LENGTH or not count:
        return parse_packet(decode_json(raw), raw, new_id)
    if raw[-1:] != b"}" or raw[:1] != b"{":
        raw = raw.strip()  # a copy: only when there is space (or a CR) to cut
    return Packet(pid, shape.emitter, count, raw)


def parse_one(body: bytes, new_id: Callable[[], str] = new_packet_id) -> Packet:
    """One packet sent as a JSON object."""
    if b"\n" in body:
        return parse_packet(decode_json(body), body, new_id)
    return parse_line(body, new_id)


def parse_batch(
    body: bytes, *, ndjson: bool, new_id: Callable[[], str] = new_packet_id
) -> list[Packet]:
    """Many packets: a JSON array of objects, or NDJSON (one object per line, blank lines ok).

    A batch is taken whole or not at all; the error names the first bad packet.
    """
    packets: list[Packet] = []
    if ndjson:
        for lineno, line in enumerate(body.split(b"\n"), start=1):
            if not line or line.isspace():
                continue
            try:
                packets.append(parse_line(line, new_id))
            except MalformedJSON:
                decode_json(line, f"line {lineno}")  # raises, naming the line
                raise
            except InvalidPacket as exc:
                raise InvalidPacket(f"line {lineno}: {exc.message}") from None
    else:
        items = decode_json(body)
        if not isinstance(items, list):
            raise InvalidPacket(f"a batch must be a JSON array of packets, got {_type_name(items)}")
        for i, obj in enumerate(items):
            try:
                packets.append(parse_packet(obj, None, new_id))
            except InvalidPacket as exc:
                raise InvalidPacket(f"packet [{i}]: {exc.message}") from None
    if not packets:
        raise InvalidPacket("the batch holds no packets")
    return packets


def frame_ndjson(packets: list[Packet]) -> bytes:
    """The forwarding body for a batch: one packet per line."""
    return b"\n".join([p.body for p in packets]) + b"\n"
