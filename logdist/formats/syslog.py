"""Syslog messages (RFC 5424 and RFC 3164), one a frame or a datagram, made into logdist
messages. Pure: no I/O. How frames are cut from a stream is `syslog_stream.py`'s.

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

from logdist.formats.outbound import STANDARD, epoch_ns, records, rfc3339_ns, text
from logdist.formats.records import rfc3339

FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
    "authpriv", "ftp", "ntp", "audit", "alert", "clock",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)  # fmt: skip
LEVELS = ("FATAL", "FATAL", "FATAL", "ERROR", "WARN", "INFO", "INFO", "DEBUG")
EMITTER = "syslog"
MESSAGES_PER_PACKET = 500

_PRI = re.compile(r"<(\d{1,3})>")
# PRI as it is written (1-3 digits, no leading zero) to its level and facility.
PRIORITIES = {str(pri).encode(): (LEVELS[pri & 7], FACILITIES[pri >> 3]) for pri in range(192)}
LINE_ENDS = (b"\n", b"\r", b"\x00")
# An octet-counted RFC 5424 frame's length and header, when its stamp is UTC and it has no SD.
OCTET_5424 = re.compile(
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


# -- out: RFC 5424 frames, octet-counted (RFC 6587) ---------------------------------------------

# A level's syslog severity (RFC 5424 §6.2.1).
SEVERITIES = {"TRACE": 7, "DEBUG": 7, "INFO": 6, "WARN": 4, "ERROR": 3, "FATAL": 2}
# The structured-data element logdist writes: 32473 is the enterprise number RFC 5612 sets
# aside for documentation and examples.
SD_ID = "logdist@32473"
_NOT_NAME = re.compile(r"[^!#-<>-\\^-~]")  # printable US-ASCII but '=', ']', '"' and space
_NOT_PRINTABLE = re.compile(r"[^!-~]")


def _header_field(value: Any, limit: int) -> str:
    """A HOSTNAME, APP-NAME or MSGID: printable US-ASCII, at most `limit`; '-' when empty."""
    out = _NOT_PRINTABLE.sub("_", value if isinstance(value, str) else "")[:limit]
    return out or "-"


def _param(name: str, value: Any) -> str:
    name = _NOT_NAME.sub("_", name)[:32] or "_"
    if not isinstance(value, str):
        value = "" if value is None else orjson.dumps(value).decode()
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")
    return f'{name}="{escaped}"'


def frame_5424(
    message: dict[str, Any], pid: str, emitter: str | None, index: int, facility: int
) -> bytes:
    """One message as an octet-counted RFC 5424 frame: `LEN <PRI>1 TS HOST APP - MSGID SD MSG`."""
    level = message.get("level")
    pri = facility * 8 + SEVERITIES.get(level if isinstance(level, str) else "", 6)
    ns = epoch_ns(message.get("ts"))
    stamp = rfc3339_ns(ns) if ns is not None else "-"
    params = [_param("packetId", pid), _param("index", str(index))]
    params += [_param(k, v) for k, v in message.items() if k not in STANDARD]
    line = (
        f"<{pri}>1 {stamp} {_header_field(message.get('host'), 255)}"
        f" {_header_field(message.get('service'), 48)} - {_header_field(emitter, 32)}"
        f" [{SD_ID} {' '.join(params)}] {text(message.get('message'))}"
    ).encode()
    return b"%d %s" % (len(line), line)


def encode_syslog(bodies: list[bytes], facility: str) -> tuple[bytes, int]:
    """Every message of the batch as frames, back to back."""
    code = FACILITIES.index(facility)
    frames = [
        frame_5424(m, pid, emitter, index, code) for m, pid, emitter, index in records(bodies)
    ]
    return b"".join(frames), len(frames)
