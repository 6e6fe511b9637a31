"""Syslog on a stream (RFC 6587), and the packets its messages make. Pure: no I/O.

Framing, decided frame by frame as RFC 6587 allows: a frame that starts with a digit is
octet-counted (`LEN SP MSG`); anything else runs to the next newline (LF; a trailing CR or NUL
is dropped). A frame longer than the limit is skipped whole and counted, never held. Each
frame is made a message by `syslog.parse_message`; `Streams` gathers each stream's messages
into packets, in the distributor or in a parse process.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from logdist.formats.packet import Made
from logdist.formats.syslog import (
    EMITTER,
    LINE_ENDS,
    MESSAGES_PER_PACKET,
    OCTET_5424,
    PRIORITIES,
    parse_message,
)

# The longest a length prefix can be (a frame of up to 999,999,999 bytes).
MAX_LEN_DIGITS = 9


class Framer:
    """Cuts a byte stream into syslog frames, octet-counted or newline-ended, frame by frame.

    Holds at most one unfinished frame of up to `max_frame` bytes; a longer one is skipped and
    counted in `oversize`.
    """

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self.buf = b""  # the start of a frame whose end has not come
        self.skip = 0  # bytes of an oversize octet-counted frame still to drop
        self.discarding = False  # dropping an oversize line up to its newline
        self.oversize = 0
        self.stamps: dict[tuple[Any, ...], str] = {}  # RFC 3339 UTC ms, by stamp

    def feed(self, data: bytes) -> list[bytes]:
        if self.skip:
            if len(data) <= self.skip:
                self.skip -= len(data)
                return []
            data = data[self.skip :]
            self.skip = 0
        if self.buf:
            data = self.buf + data
        frames: list[bytes] = []
        append = frames.append
        pos, end = 0, len(data)
        while pos < end:
            if self.discarding:
                nl = data.find(b"\n", pos)
                if nl < 0:
                    pos = end
                    break
                self.discarding = False
                pos = nl + 1
                continue
            if 48 <= data[pos] <= 57:  # a digit: octet-counted
                sp = data.find(b" ", pos, pos + MAX_LEN_DIGITS + 1)
                head = data[pos:sp]
                if sp > pos and head.isdigit():
                    length = int(head)
                    start = sp + 1
                    stop = start + length
                    if length > self.max_frame:
                        self.oversize += 1
                        if stop <= end:
                            pos = stop
                            continue
                        self.skip = stop - end
                        pos = end
                        break
                    if stop > end:
                        break  # the rest has not come yet
                    if length:
                        append(data[start:stop])
                    pos = stop
                    continue
                if sp < 0 and end - pos <= MAX_LEN_DIGITS and data[pos:end].isdigit():
                    break  # the length itself is not all here yet
                # Not a length: read it as a line.
            nl = data.find(b"\n", pos)
            if nl < 0:
                if end - pos > self.max_frame:
                    self.oversize += 1
                    self.discarding = True
                    pos = end
                break
            if nl - pos > self.max_frame:
                self.oversize += 1
            else:
                line = data[pos:nl].rstrip(b"\r\x00")
                if line.strip():
                    append(line)
            pos = nl + 1
        self.buf = data[pos:] if pos < end else b""
        return frames

    def messages(self, data: bytes, peer: str, received: datetime) -> list[dict[str, Any]]:
        """`feed`, each frame made a message as `parse_message` makes it. Octet-counted RFC 5424
        frames with a UTC stamp and no structured data (what `logger --rfc5424 --octet-count`
        and rsyslog send) are framed and read in one match; the rest go the general way."""
        if self.skip or self.discarding:
            return [parse_message(f, peer, received) for f in self.feed(data)]
        if self.buf:
            data, self.buf = self.buf + data, b""
        out: list[dict[str, Any]] = []
        append = out.append
        match = OCTET_5424.match
        stamps = self.stamps
        pos, end, limit = 0, len(data), self.max_frame
        while pos < end:
            m = match(data, pos)
            if m is None:
                break
            digits, pri, seconds, frac, hostname, app, procid, msgid = m.groups()
            length = int(digits)
            stop = pos + len(digits) + 1 + length
            head = m.end()
            if stop > end or length > limit or head > stop:
                break
            if head < stop and data[head] != 32:
                break
            kind = PRIORITIES.get(pri)  # (level, facility); None past 191 or with leading zeros
            if kind is None:
                break
            stamp = (seconds, frac)
            ts = stamps.get(stamp)
            if ts is None:  # messages of the same millisecond share one string
                if len(stamps) > 4096:
                    stamps.clear()
                ts = stamps[stamp] = f"{seconds.decode()}.{(frac or b'').decode():0<3}Z"
            message = data[head + 1 : stop]
            if message[-1:] in LINE_ENDS:
                message = message.rstrip(b"\r\n\x00")
            if message[:3] == b"\xef\xbb\xbf":
                message = message[3:]
            msg: dict[str, Any] = {
                "ts": ts,
                "level": kind[0],
                "service": "" if app == b"-" else app.decode(),
                "host": peer if hostname == b"-" else hostname.decode(),
                "message": message.decode("utf-8", "replace"),
                "facility": kind[1],
            }
            if procid != b"-":
                msg["procid"] = procid.decode()
            if msgid != b"-":
                msg["msgid"] = msgid.decode()
            msg["syslog"] = "rfc5424"
            append(msg)
            pos = stop
        if pos < end:  # the rest (another kind of frame, or one not all here) the general way
            out += [parse_message(f, peer, received) for f in self.feed(data[pos:])]
        return out

    def rest(self) -> bytes | None:
        """What is left when the stream ends: a last line without its newline, if any."""
        line = self.buf.rstrip(b"\r\x00")
        self.buf = b""
        if self.discarding or self.skip or not line.strip():
            return None
        if line[:1].isdigit() and b" " in line[: MAX_LEN_DIGITS + 1]:
            head = line.split(b" ", 1)[0]
            if head.isdigit():
                return None  # an octet-counted frame cut short: incomplete, not a message
        return line


class Streams:
    """Syslog streams (a TCP connection each, or the UDP port) made into packets: for each its
    Framer and the messages gathered since its last packet. The distributor runs one in its own
    process, or one in each parse process (`worker_*` below), a stream always in the same one.
    Packet ids are `PREFIX-N`."""

    def __init__(self, prefix: str, max_frame: int, per_packet: int = MESSAGES_PER_PACKET) -> None:
        self.prefix = prefix
        self.max_frame = max_frame
        self.per_packet = per_packet
        self.seq = 0
        self.streams: dict[int, tuple[Framer, list[dict[str, Any]]]] = {}

    def _stream(self, stream: int) -> tuple[Framer, list[dict[str, Any]]]:
        found = self.streams.get(stream)
        if found is None:
            found = self.streams[stream] = (Framer(self.max_frame), [])
        return found

    def feed(
        self, stream: int, data: bytes, peer: str, received: datetime
    ) -> tuple[list[Made], int, int]:
        """What `data` completes: full packets, frames skipped as oversize, and the messages
        left gathering."""
        framer, gathered = self._stream(stream)
        before = framer.oversize
        gathered += framer.messages(data, peer, received)
        return self._made(gathered, whole=False), framer.oversize - before, len(gathered)

    def gather(self, stream: int, messages: list[dict[str, Any]]) -> tuple[list[Made], int]:
        """Messages read elsewhere (UDP datagrams): full packets, and how many are left."""
        _, gathered = self._stream(stream)
        gathered += messages
        return self._made(gathered, whole=False), len(gathered)

    def flush(self, stream: int) -> tuple[list[Made], int, int]:
        """Everything gathered, as packets (the gathering time is up)."""
        found = self.streams.get(stream)
        return (self._made(found[1], whole=True) if found else []), 0, 0

    def close(self, stream: int, peer: str, received: datetime) -> tuple[list[Made], int, int]:
        """The stream ended: its last line, and all it gathered, as packets; then forget it."""
        found = self.streams.pop(stream, None)
        if found is None:
            return [], 0, 0
        framer, gathered = found
        rest = framer.rest()
        if rest is not None:
            gathered.append(parse_message(rest, peer, received))
        return self._made(gathered, whole=True), 0, 0

    def _made(self, gathered: list[dict[str, Any]], whole: bool) -> list[Made]:
        per = self.per_packet
        cut = len(gathered) if whole else len(gathered) - len(gathered) % per
        made: list[Made] = []
        for start in range(0, cut, per):
            self.seq += 1
            pid = f"{self.prefix}-{self.seq}"
            chunk = gathered[start : min(start + per, cut)]
            body = orjson.dumps({"packetId": pid, "emitter": EMITTER, "messages": chunk})
            made.append((pid, len(chunk), body, None))
        del gathered[:cut]
        return made


# A parse process's streams (see Streams): set by `worker_init`, used by the calls below.
_WORKER: Streams | None = None


def worker_init(prefix: str, max_frame: int) -> None:
    global _WORKER
    _WORKER = Streams(prefix, max_frame)


def worker_call(name: str, stream: int, *args: Any) -> tuple[list[Made], int, int]:
    assert _WORKER is not None, "worker_init first"
    result: tuple[list[Made], int, int] = getattr(_WORKER, name)(stream, *args)
    return result
