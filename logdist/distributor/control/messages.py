"""Packets as cluster mode's stream messages: one packet's JSON, or a run of packets one a
line; deflated past COMPRESS_AT bytes (said by the ENCODING header); keyed for the stream's
dedupe by their packet ids."""

from __future__ import annotations

import zlib
from collections.abc import Mapping

from logdist.formats.packet import Packet, parse_stored

# Messages at least this large are stored deflated (zlib level 1), said by the ENCODING
# header.
COMPRESS_AT = 1024
ENCODING = "Logdist-Encoding"


def message_id(first: Packet, last: Packet, packets: int) -> str:
    """The stream's dedupe key for a message of `packets` packets, `first`'s first to
    `last`'s last: one packet's id, or the first and last packet ids and how many (the same
    request sent again, published alone, makes the same key; grouped with other requests'
    packets it may not, and the analyzers drop the repeat by packet id)."""
    if packets == 1:
        return first.id
    head = first.ids[0] if first.ids else first.id
    tail = last.ids[-1] if last.ids else last.id
    return f"{head}..{tail}#{packets}"


def message_of(packets: list[Packet]) -> tuple[int, bytes, dict[str, str]]:
    """The message that carries `packets`: its size before deflating, its body, its headers."""
    body = packets[0].body if len(packets) == 1 else b"\n".join(p.body for p in packets)
    headers = {"Nats-Msg-Id": message_id(packets[0], packets[-1], sum(p.count for p in packets))}
    plain = len(body)
    if plain >= COMPRESS_AT:
        # Log lines shrink several times: fewer bytes for every server to write and send
        # to the others, at a fraction of the CPU that saves them.
        body = zlib.compress(body, 1)
        headers[ENCODING] = "deflate"
    return plain, body, headers


def packets_of(payload: bytes, headers: Mapping[str, str] | None = None) -> list[Packet]:
    """A stream message's packets: a run's lines, or one packet's JSON (zlib.error when its
    deflated body is not; LogdistError when what it holds is not packets)."""
    if headers and headers.get(ENCODING) == "deflate":
        payload = zlib.decompress(payload)
    return parse_stored(payload)
