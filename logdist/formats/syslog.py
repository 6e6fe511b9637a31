"""Syslog messages (RFC 5424 and RFC 3164) framed on a stream (RFC 6587) or one a datagram,
made into logdist messages. Pure: no I/O.

Framing, decided frame by frame as RFC 6587 allows: a frame that starts with a digit is
octet-counted (`LEN SP MSG`); anything else runs to the next newline (LF; a trailing CR or NUL
is dropped). A frame longer than the limit is skipped whole and counted, never held.

Each message becomes a logdist message with the standard fields:

- `ts`: the TIMESTAMP in RFC 3339 UTC with milliseconds. RFC 3164's `Mmm dd hh:mm:ss` has no
  year or zone: it is taken as UTC in the year it was received. Missing or unreadable: the time
  it was received (an unreadable one kept as `ts_raw`).
- `level`: from the severity in PRI — emerg/alert/crit (0–2) FATAL, err (3) ERROR, warning (4)
  WARN, notice/info (5, 6) INFO, debug (7) DEBUG. No PRI: INFO (RFC 3164 says user.notice).
- `service`: APP-NAME (RFC 3164: the TAG); `host`: HOSTNAME, else the sender's address.
- `message`: MSG (UTF-8, a leading BOM and a trailing line end dropped; bytes that are not
  UTF-8 replaced).

and keeps `facility` (its name: `kern`, `user`, … `local7`), `procid` (3164: the `[pid]` of the
tag), `msgid`, `structured_data` (`{SD-ID: {PARAM: value}}`) when present, and `syslog`: the
format it was read as (`rfc5424`, `rfc3164`, or `raw` for a line with no syslog header).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from logdist.formats.packet import Made
from logdist.formats.records import rfc3339

FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
    "authpriv", "ftp", "ntp", "audit", "alert", "clock",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)  # fmt: skip
LEVELS = ("FATAL", "FATAL", "FATAL", "ERROR", "WARN", "INFO", "INFO", "DEBUG")
EMITTER = "syslog"
MESSAGES_PER_PACKET = 500
# The longest a length prefix can be (a frame of up to 999,999,999 bytes).
MAX_LEN_DIGITS = 9

_PRI = re.compile(r"<(\d{1,3})>")
# PRI as it is written (1-3 digits, no leading zero) to its level and facility.
PRIORITIES = {str(pri).encode(): (LEVELS[pri & 7], FACILITIES[pri >> 3]) for pri in range(192)}
_LINE_ENDS = (b"\n", b"\r", b"\x00")
# An octet-counted RFC 5424 frame's length and header, when its stamp is UTC and it has no SD.
_OCTET_5424 = re.compile(
    rb"([1-9][0-9]{0,8}) <([0-9]{1,3})>1 "
    rb"([0-9]{4}-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9])(?:\.([0-9]{1,3})[0-9]{0,6})?"
    rb"(?:Z|\+00:00) ([!-~]+) ([!-~]+) ([!-~]+) ([!-~]+) -"
)
_HEADER_5424 = re.compile(r"1 (\S+) (\S+) (\S+) (\S+) (\S+) ")
_SD_ELEMENT = re.compile(r'\[([^\s=\]"]+)((?:\s+[^\s=\]"]+="(?:[^"\\]|\\.)*")*)\s*\]')
_SD_PARAM = re.compile(r'([^\s=\]"]+)="((?:[^"\\]|\\.)*)"')
_SD_ESCAPE = re.compile(r"\\([\"\\\]])")
_TS_3164 = re.compile(r"([A-Z][a-z]{2}) ([ \d]\d) (\d\d):(\d\d):(\d\d) ")
_TAG = re.compile(r"([^\s:\[\]]{1,64})(?:\[([^\]\s]{0,64})\])?: ?")
MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
)}  # fmt: skip


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
        match = _OCTET_5424.match
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
            if message[-1:] in _LINE_ENDS:
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


_DIGITS = str.maketrans("123456789", "000000000")
_SHAPE = "0000-00-00T00:00:00"


def _utc_ms(stamp: str) -> str | None:
    """`_ts` for a stamp already in UTC (`Z` or `+00:00`), without a regular expression (this
    is most messages' path and `_ts`'s first try); None for any other."""
    if stamp[-1:] == "Z":
        core = stamp[:-1]
    elif stamp[-6:] == "+00:00":
        core = stamp[:-6]
    else:
        return None
    if core[:19].translate(_DIGITS) != _SHAPE:
        return None
    frac = core[20:]
    if len(core) == 19:
        return f"{core}.000Z"
    if core[19] != "." or not frac.isdigit() or not frac.isascii():
        return None
    return f"{core[:19]}.{frac[:3].ljust(3, '0')}Z"


def _ts(text: str) -> str | None:
    """RFC 3339 UTC milliseconds for an RFC 3339 timestamp, else None."""
    utc = _utc_ms(text)
    if utc is not None:  # already UTC: only the fraction changes
        return utc
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return rfc3339(moment)
    except (ValueError, OverflowError):
        return None


def _ts_3164(m: re.Match[str], received: datetime) -> str | None:
    month = MONTHS.get(m.group(1))
    if month is None:
        return None
    try:
        moment = datetime(
            received.year, month, int(m.group(2)), int(m.group(3)), int(m.group(4)),
            int(m.group(5)), tzinfo=UTC,
        )  # fmt: skip
    except ValueError:
        return None
    if moment - received > timedelta(days=1):  # December's message read in January
        try:
            moment = moment.replace(year=moment.year - 1)
        except ValueError:  # 29 February
            return None
    return rfc3339(moment)


def _structured_data(text: str) -> tuple[dict[str, dict[str, str]] | None, str] | None:
    """STRUCTURED-DATA at the start of `text` and what follows it, or None if it is not."""
    if text.startswith("-"):
        return None, text[1:]
    sd: dict[str, dict[str, str]] = {}
    pos = 0
    while pos < len(text) and text[pos] == "[":
        m = _SD_ELEMENT.match(text, pos)
        if m is None:
            return None
        params = {
            name: _SD_ESCAPE.sub(r"\1", value) for name, value in _SD_PARAM.findall(m.group(2))
        }
        sd.setdefault(m.group(1), {}).update(params)
        pos = m.end()
    if not sd:
        return None
    return sd, text[pos:]


def _nil(value: str) -> str | None:
    return None if value == "-" else value


def parse_message(frame: bytes, peer: str, received: datetime) -> dict[str, Any]:
    """One syslog frame as a logdist message (never fails: what cannot be read as syslog is
    kept as the message of a `raw` one)."""
    frame = frame.rstrip(b"\r\n\x00")  # a line end inside an octet-counted frame
    text = frame.decode("utf-8", "replace")
    parts = text.split(" ", 7)
    if len(parts) >= 7 and parts[6] == "-" and parts[0][-2:] == ">1":
        # The common case, read without the general parser: a UTC stamp and no SD.
        head = parts[0]
        ts = _utc_ms(parts[1]) if head[0] == "<" and head[1:-2].isdigit() else None
        if ts is not None and (pri := int(head[1:-2])) <= 191:
            _, _, hostname, app, procid, msgid, _, *rest = parts
            message = rest[0] if rest else ""
            out: dict[str, Any] = {
                "ts": ts,
                "level": LEVELS[pri & 7],
                "service": "" if app == "-" else app,
                "host": peer if hostname == "-" else hostname,
                "message": message.removeprefix("\ufeff"),
                "facility": FACILITIES[pri >> 3],
            }
            if procid != "-":
                out["procid"] = procid
            if msgid != "-":
                out["msgid"] = msgid
            out["syslog"] = "rfc5424"
            return out
    pri_match = _PRI.match(text)
    if pri_match is None or int(pri_match.group(1)) > 191:
        return _raw(text, peer, received)
    pri = int(pri_match.group(1))
    text = text[pri_match.end() :]
    facility = FACILITIES[pri >> 3]
    level = LEVELS[pri & 7]
    m = _HEADER_5424.match(text)
    if m is not None:
        sd = _structured_data(text[m.end() :])
        if sd is not None:
            return _rfc5424(m, sd[0], sd[1], facility, level, peer, received)
    return _rfc3164(text, facility, level, peer, received)


def _rfc5424(
    m: re.Match[str],
    sd: dict[str, dict[str, str]] | None,
    rest: str,
    facility: str,
    level: str,
    peer: str,
    received: datetime,
) -> dict[str, Any]:
    stamp, hostname, app, procid, msgid = m.groups()
    ts = None if stamp == "-" else _ts(stamp)
    message = rest[1:] if rest.startswith(" ") else rest
    if message.startswith("\ufeff"):
        message = message[1:]
    out: dict[str, Any] = {
        "ts": ts or rfc3339(received),
        "level": level,
        "service": _nil(app) or "",
        "host": _nil(hostname) or peer,
        "message": message,
        "facility": facility,
    }
    if procid != "-":
        out["procid"] = procid
    if msgid != "-":
        out["msgid"] = msgid
    if sd is not None:
        out["structured_data"] = sd
    out["syslog"] = "rfc5424"
    if ts is None and stamp != "-":
        out["ts_raw"] = stamp
    return out


def _rfc3164(text: str, facility: str, level: str, peer: str, received: datetime) -> dict[str, Any]:
    ts: str | None = None
    ts_raw: str | None = None
    m = _TS_3164.match(text)
    if m is not None:
        ts = _ts_3164(m, received)
        if ts is None:
            ts_raw = m.group(0).strip()
        text = text[m.end() :]
    else:  # many senders put an RFC 3339 stamp here instead
        head, _, tail = text.partition(" ")
        if head[:4].isdigit() and "T" in head:
            ts = _ts(head)
            if ts is None:
                ts_raw = head
            text = tail
    host = ""
    tag = _TAG.match(text)
    if tag is None and (ts is not None or ts_raw is not None):
        # After a TIMESTAMP, a first word that is not a TAG is the HOSTNAME; the TAG follows.
        word, sep, after = text.partition(" ")
        if sep and word:
            host, text = word, after
            tag = _TAG.match(text)
    out: dict[str, Any] = {
        "ts": ts or rfc3339(received),
        "level": level,
        "service": tag.group(1) if tag is not None else "",
        "host": host or peer,
        "message": text[tag.end() :] if tag is not None else text,
        "facility": facility,
    }
    if tag is not None and tag.group(2):
        out["procid"] = tag.group(2)
    out["syslog"] = "rfc3164"
    if ts_raw is not None:
        out["ts_raw"] = ts_raw
    return out


def _raw(text: str, peer: str, received: datetime) -> dict[str, Any]:
    return {
        "ts": rfc3339(received),
        "level": "INFO",
        "service": "",
        "host": peer,
        "message": text,
        "syslog": "raw",
    }


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
            made.append((pid, len(chunk), body))
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
