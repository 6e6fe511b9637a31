"""Packet validation and framing: what is accepted, and the exact bytes that are forwarded."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import orjson

from logdist.errors import InvalidPacket, MalformedJSON

MAX_ID_LENGTH = 128
# Messages a run of packets may carry (see Packet), by default: the router's granularity for
# bulk requests (the distributor's `run_messages`). A run is routed, spooled, retried and
# forwarded as one item, so the fewer runs a request makes, the less the distributor does per
# message: at 128, `logdist bench` (c) made 9 runs of each 1,000-message request and delivered
# ~12 % fewer messages.
RUN_MESSAGES = 1024


def new_packet_id() -> str:
    return str(uuid.uuid4())


def part_id(pid: str, indexes: object) -> str:
    """A packet's id, or for a part of one (some of its messages, their original `indexes`
    listed: see docs/outputs.md) `<packetId>#<first index>`, so that two parts of one packet
    are told apart by dead letters and by an analyzer's dedupe."""
    if isinstance(indexes, list) and indexes and type(indexes[0]) is int:
        return f"{pid}#{indexes[0]}"
    return pid


@dataclass(frozen=True, slots=True)
class Refusal:
    """An analyzer refused a packet's data (a 4xx other than 408/429): who, and its answer."""

    analyzer: str
    status: int
    answer: str


@dataclass(slots=True)
class Packet:
    """One accepted packet, or a run of packets that came in one request and travel together.

    `body` is exactly what is forwarded: the packet's JSON object on one line (the emitter's
    own bytes whenever they already are that, so nothing is re-serialised), or for a run its
    packets' lines joined by newlines. A run is routed, spooled and retried as one item and
    charged all its messages; `count`, `ids` and `counts` say what it holds.
    """

    id: str
    emitter: str | None
    messages: int
    body: bytes
    attempts: int = 0
    last_failed: str | None = None
    # The spool segment holding it (-1: not spooled).
    segment: int = -1
    # Packets in it; for a run (count > 1) their ids and message counts, in order.
    count: int = 1
    ids: list[str] | None = None
    counts: list[int] | None = None
    # The analyzers that refused it, in order (None: none did).
    refusals: list[Refusal] | None = None
    # For a run whose packets come from several emitters (`emitter` is then None): theirs,
    # in order.
    emitters: list[str | None] | None = None
    # An OTLP request kept as it came (`body` is its envelope; `messages` its records).
    otlp: bool = False

    def refusers(self) -> frozenset[str]:
        """The analyzers that refused it, and the one that last failed it."""
        out = {r.analyzer for r in self.refusals or ()}
        if self.last_failed is not None:
            out.add(self.last_failed)
        return frozenset(out)

    def parts(self) -> list[Packet]:
        """The packets one by one (itself when it is one)."""
        if self.ids is None or self.counts is None:
            return [self]
        lines = self.body.split(b"\n")
        emitters = self.emitters or [self.emitter] * len(lines)
        return [
            Packet(pid, emitter, n, line, self.attempts, self.last_failed, self.segment)
            for pid, emitter, n, line in zip(self.ids, emitters, self.counts, lines, strict=True)
        ]


# A packet as a parse process hands it back (see distributor.inputs.parsing): id, messages,
# body, and the emitter it is from when the body does not say (an OTLP request's service).
Made = tuple[str, int, bytes, str | None]


# An OTLP request the distributor received, kept as it came for an analyzer that takes OTLP:
# a JSON object whose first key is `otlp` (the ExportLogsServiceRequest's protobuf, base64),
# with its packet id, its record count, and the peer and time it came from and at (what
# converting its records for another analyzer needs). Only the distributor makes them.
ENVELOPE = b'{"otlp":"'


def envelope(
    pid: str, records: int, request: bytes, peer: str, received: str, emitter: str = "otlp"
) -> bytes:
    return orjson.dumps(
        {
            "otlp": base64.b64encode(request).decode(),
            "packetId": pid,
            "emitter": emitter,
            "records": records,
            "peer": peer,
            "received": received,
        }
    )


def parse_envelope(body: bytes) -> Packet:
    """The packet an envelope is (InvalidPacket when it is not one)."""
    obj = decode_json(body)
    pid, records = obj.get("packetId"), obj.get("records")
    if not (
        isinstance(obj.get("otlp"), str)
        and isinstance(pid, str)
        and pid
        and type(records) is int
        and records > 0
    ):
        raise InvalidPacket("not an OTLP envelope (otlp, packetId, records)")
    emitter = obj.get("emitter")
    return Packet(pid, emitter if isinstance(emitter, str) else "otlp", records, body, otlp=True)


def opened_envelope(body: bytes) -> tuple[bytes, str, str, str]:
    """An envelope's request, packet id, peer and receive time."""
    obj = orjson.loads(body)
    return base64.b64decode(obj["otlp"]), obj["packetId"], obj["peer"], obj["received"]


def packet_ids(packets: list[Packet]) -> list[str]:
    """Every packet id in `packets`, runs opened, in order."""
    if len(packets) == 1 and packets[0].ids is not None:
        return packets[0].ids
    return [pid for p in packets for pid in (p.ids if p.ids is not None else (p.id,))]


def total(packets: list[Packet]) -> int:
    """Packets in `packets`, runs counted by what they hold."""
    if len(packets) == 1:
        return packets[0].count
    return sum([p.count for p in packets])


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
    pid = part_id(pid, obj.get("indexes"))
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


class _Checked(msgspec.Struct, gc=False):
    """What routing reads of a packet, every rule checked by msgspec in C; every other field
    is validated JSON and left in place."""

    messages: Annotated[list[_Message], msgspec.Meta(min_length=1)]
    packetId: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]  # noqa: N815
    emitter: str | None = None
    indexes: list[int] | None = None

    @property
    def id(self) -> str:
        return self.packetId if self.indexes is None else part_id(self.packetId, self.indexes)


_decode_checked = msgspec.json.Decoder(_Checked).decode
_decode_checked_lines = msgspec.json.Decoder(_Checked).decode_lines


@dataclass(slots=True)
class Lines:
    """An NDJSON body read by `read_lines`: each packet's id, emitter and message count, in
    order; with `exact`, every line of `body` is exactly one packet (see `lines`)."""

    body: bytes
    ids: list[str]
    emitters: list[str | None]
    counts: list[int]
    exact: bool

    def lines(self) -> list[bytes]:
        """The packets' own lines (only for an `exact` read)."""
        assert self.exact, "a counting read does not know which bytes are whose packet"
        lines = self.body.split(b"\n")
        if not lines[-1]:
            lines.pop()
        return lines


def one_a_line(body: bytes, packets: int) -> bool:
    """Whether NDJSON that msgspec read as `packets` objects has exactly one on each line.

    A raw newline is never inside a JSON string, and `}<newline>{` is not valid JSON inside an
    object or array, so each such newline is a boundary between two top-level objects. When
    every newline but a last one is such a boundary and there are as many lines as objects,
    no object spans lines and no two share one. (`find` is memchr; `count` and `split` look
    at every byte in Python's C loops, three times slower on a 100 KB body.)
    """
    if body[:1] != b"{":
        return False
    find = body.find
    last = len(body) - 1
    boundaries = 0
    i = find(b"\n")
    while i != -1 and i != last:
        if body[i - 1] != 0x7D or body[i + 1] != 0x7B:  # } and {
            return False
        boundaries += 1
        i = find(b"\n", i + 1)
    return boundaries == packets - 1 and body[last - 1 if i == last else last] == 0x7D


def read_lines(body: bytes, *, keep_lines: bool = True) -> Lines | None:
    """NDJSON whose every line is one packet with an id, read by msgspec in one C call
    (every packet checked, and with `keep_lines` the layout too: no line can hide a second
    packet or run into the next); else None.

    Blank lines, CRs, spaces around a packet, a missing id or any error send the batch the
    line-by-line way, which says what is wrong (or assigns the ids).

    Without `keep_lines` (a reader that only counts) the layout is not checked: packets are
    told apart by JSON whitespace, so one may span lines or two share one, which changes
    nothing counted but could not say which bytes are whose packet.
    """
    try:
        shapes = _decode_checked_lines(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if not shapes or (keep_lines and not one_a_line(body, len(shapes))):
        return None
    return Lines(
        body,
        [s.id for s in shapes],
        [s.emitter for s in shapes],
        [len(s.messages) for s in shapes],
        keep_lines,
    )


def parse_line(raw: bytes, new_id: Callable[[], str] = new_packet_id) -> Packet:
    """One packet from its JSON bytes, building only what routing needs.

    The common packet (an id, an emitter name, messages that are objects) is read by msgspec
    without building its messages; anything else goes the full way through `parse_packet`,
    which assigns a missing id or raises the error that says what is wrong.
    """
    try:
        shape = _decode_checked(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return parse_packet(decode_json(raw), raw, new_id)
    pid, count = shape.id, len(shape.messages)
    if raw[-1:] != b"}" or raw[:1] != b"{":
        raw = raw.strip()  # a copy: only when there is space (or a CR) to cut
    return Packet(pid, shape.emitter, count, raw)


def parse_one(body: bytes, new_id: Callable[[], str] = new_packet_id) -> Packet:
    """One packet sent as a JSON object."""
    if b"\n" in body:
        return parse_packet(decode_json(body), body, new_id)
    return parse_line(body, new_id)


def parse_batch(
    body: bytes,
    *,
    ndjson: bool,
    new_id: Callable[[], str] = new_packet_id,
    run: int = 1,
    run_messages: int = RUN_MESSAGES,
) -> list[Packet]:
    """Many packets: a JSON array of objects, or NDJSON (one object per line, blank lines ok).

    A batch is taken whole or not at all; the error names the first bad packet. With
    `run` > 1, NDJSON packets that all have ids come back as runs of up to `run` packets and
    `run_messages` messages (a packet with more is a run of its own).
    """
    if ndjson:
        fast = _checked_ndjson(body, run, run_messages)
        if fast is not None:
            return fast
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


def _checked_ndjson(body: bytes, run: int, run_messages: int) -> list[Packet] | None:
    """NDJSON whose every line is a packet with an id, checked in one C call; else None.

    Blank lines, CRs, a missing id or any error send the batch the line-by-line way, which
    says what is wrong (or assigns the ids).
    """
    read = read_lines(body)
    if read is None:
        return None
    ids, emitters, counts = read.ids, read.emitters, read.counts
    size = len(ids)
    if run > 1 and size > 1:
        messages = sum(counts)
        if size <= run and messages <= run_messages:
            # The usual bulk request is one run, and its body is the request's own bytes.
            body = body[:-1] if body[-1:] == b"\n" else body
            return [_run(ids, emitters, counts, messages, body)]
    lines = read.lines()
    if run <= 1:
        return [
            Packet(pid, emitter, n, line)
            for pid, emitter, n, line in zip(ids, emitters, counts, lines, strict=True)
        ]
    out = []
    start = 0
    while start < size:
        # A run ends at `run` packets or `run_messages` messages, whichever comes first.
        end, messages = start + 1, counts[start]
        limit = min(size, start + run)
        while end < limit and messages + counts[end] <= run_messages:
            messages += counts[end]
            end += 1
        if end - start == 1:
            out.append(Packet(ids[start], emitters[start], messages, lines[start]))
        else:
            out.append(
                _run(
                    ids[start:end],
                    emitters[start:end],
                    counts[start:end],
                    messages,
                    b"\n".join(lines[start:end]),
                )
            )
        start = end
    return out


def _run(
    ids: list[str], emitters: list[str | None], counts: list[int], messages: int, body: bytes
) -> Packet:
    """Consecutive packets as one run; it names their emitter when they share it, else lists
    each one's."""
    emitter = emitters[0]
    if emitters.count(emitter) == len(emitters):
        return Packet(ids[0], emitter, messages, body, 0, None, -1, len(ids), ids, counts)
    return Packet(ids[0], None, messages, body, 0, None, -1, len(ids), ids, counts, None, emitters)


def parse_stored(payload: bytes) -> list[Packet]:
    """The packets of a record logdist stored (a spool record, a cluster stream message, a
    dead letter): a run's lines, or one packet's JSON, or OTLP envelopes among them.
    LogdistError when it holds no packets."""
    if ENVELOPE in payload:
        return [
            parse_envelope(line) if line.startswith(ENVELOPE) else parse_line(line)
            for line in payload.split(b"\n")
            if line
        ]
    if b"\n" in payload:
        return parse_batch(payload, ndjson=True, run=1 << 30)
    return [parse_packet(decode_json(payload), payload)]


def frame_ndjson(packets: list[Packet]) -> bytes:
    """The forwarding body for a batch: one packet per line."""
    return b"\n".join([p.body for p in packets]) + b"\n"
