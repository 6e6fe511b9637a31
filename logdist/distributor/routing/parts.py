"""Parts of a packet: when an analyzer's answer speaks record by record, a packet is split
into the part it delivered, the part to send again and the part it refused, each a packet
of its own that lists its messages' original indexes (`indexes`), so a record keeps its
identity (its Elasticsearch `_id`, its index in the mapping) wherever it goes next, and its
id is `<packetId>#<first index>` (see `formats.packet.part_id`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from logdist.distributor.outputs.base import Sorted
from logdist.formats.packet import Packet, part_id

DONE, AGAIN = 0, 1
# What an answer said of one record: DONE, AGAIN, or refused as (status, reason).
Mark = int | tuple[int, str]
# Characters of refusal reasons kept with a refused part.
REASON_MAX = 1000


def verdict_marks(verdict: Sorted, records: int) -> list[Mark]:
    """Each record's mark, in request order."""
    marks: list[Mark] = [DONE] * records
    for i in verdict.retry:
        if 0 <= i < records:
            marks[i] = AGAIN
    for i, status, reason in verdict.refused:
        if 0 <= i < records:
            marks[i] = (status, reason)
    return marks


def _indexes(obj: dict[str, Any], count: int) -> list[int]:
    indexes = obj.get("indexes")
    if isinstance(indexes, list) and len(indexes) == count:
        return indexes
    return list(range(count))


def part(packet: Packet, obj: dict[str, Any], chosen: list[int]) -> Packet:
    """The packet made of the messages at `chosen` (positions in `obj`, the packet read)."""
    messages = obj["messages"]
    indexes = _indexes(obj, len(messages))
    piece = dict(obj)
    piece["messages"] = [messages[i] for i in chosen]
    piece["indexes"] = [indexes[i] for i in chosen]
    return Packet(
        part_id(obj["packetId"], piece["indexes"]),
        packet.emitter,
        len(chosen),
        orjson.dumps(piece),
        packet.attempts,
        packet.last_failed,
        packet.segment,
        refusals=packet.refusals,
    )


def split_by(
    packet: Packet, marks: list[Mark]
) -> tuple[Packet | None, Packet | None, list[tuple[Packet, int, str]]]:
    """`packet` (one packet, not a run) as its delivered part, its part to send again, and
    its refused part with the first refusal's status and the reasons; a part that would be
    the whole packet is the packet itself."""
    done = [i for i, m in enumerate(marks) if m == DONE]
    again = [i for i, m in enumerate(marks) if m == AGAIN]
    refused = [i for i, m in enumerate(marks) if isinstance(m, tuple)]
    reasons: list[str] = []
    for i in refused:
        reason = marks[i][1]  # type: ignore[index]
        if reason not in reasons:
            reasons.append(reason)
    status = marks[refused[0]][0] if refused else 0  # type: ignore[index]
    reason = "; ".join(reasons)[:REASON_MAX]
    whole = len(marks)
    if len(done) == whole:
        return packet, None, []
    if len(again) == whole:
        return None, packet, []
    if len(refused) == whole:
        return None, None, [(packet, status, reason)]
    obj = orjson.loads(packet.body)
    return (
        part(packet, obj, done) if done else None,
        part(packet, obj, again) if again else None,
        [(part(packet, obj, refused), status, reason)] if refused else [],
    )


def halves(packet: Packet) -> list[Packet]:
    """A packet of several messages as two parts: how a refusal of the whole request is
    narrowed down to the records refused, for an analyzer that takes records."""
    obj = orjson.loads(packet.body)
    count = len(obj["messages"])
    half = count // 2
    return [part(packet, obj, list(range(half))), part(packet, obj, list(range(half, count)))]


@dataclass(slots=True)
class Plan:
    """Where the packets of a batch answered record by record go: delivered, sent again,
    refused (with status and reason); and the packets split into parts to get there."""

    delivered: list[Packet] = field(default_factory=list)
    again: list[Packet] = field(default_factory=list)
    refused: list[tuple[Packet, int, str]] = field(default_factory=list)
    splits: list[tuple[Packet, list[Packet]]] = field(default_factory=list)


def plan(packets: list[Packet], verdict: Sorted) -> Plan:
    """`packets` (one by one, in request order) sorted by what `verdict` says of their records."""
    marks = verdict_marks(verdict, sum([p.messages for p in packets]))
    out = Plan()
    pos = 0
    for packet in packets:
        mine = marks[pos : pos + packet.messages]
        pos += packet.messages
        if not any(mine):
            out.delivered.append(packet)
            continue
        done, again, refused = split_by(packet, mine)
        pieces = [c for c in (done, again) if c is not None] + [r for r, _, _ in refused]
        if pieces != [packet]:
            out.splits.append((packet, pieces))
        if done is not None:
            out.delivered.append(done)
        if again is not None:
            out.again.append(again)
        out.refused += refused
    return out
