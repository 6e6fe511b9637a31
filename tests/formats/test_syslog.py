"""Syslog messages and framing. The examples are those of the RFCs themselves:
RFC 5424 section 6.5 (https://www.rfc-editor.org/rfc/rfc5424#section-6.5), RFC 3164 section 5.4
(https://www.rfc-editor.org/rfc/rfc3164#section-5.4) and RFC 6587 section 3.4
(https://www.rfc-editor.org/rfc/rfc6587#section-3.4)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logdist.formats.packet import parse_packet
from logdist.formats.syslog import parse_message
from logdist.formats.syslog_stream import Framer, Streams

NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)
STANDARD = ("ts", "level", "service", "host", "message")


def test_rfc5424_example_1_with_a_bom_and_no_structured_data() -> None:
    frame = (
        b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
        b"\xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8"
    )
    assert parse_message(frame, "10.0.0.9", NOW) == {
        "ts": "2003-10-11T22:14:15.003Z",
        "level": "FATAL",  # auth.crit
        "service": "su",
        "host": "mymachine.example.com",
        "message": "'su root' failed for lonvick on /dev/pts/8",
        "facility": "auth",
        "msgid": "ID47",
        "syslog": "rfc5424",
    }


def test_rfc5424_example_2_a_zone_offset_and_a_procid() -> None:
    frame = (
        b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - "
        b"%% It's time to make the do-nuts."
    )
    m = parse_message(frame, "10.0.0.9", NOW)
    assert (m["ts"], m["level"], m["facility"], m["procid"]) == (
        "2003-08-24T12:14:15.000Z",
        "INFO",  # local4.notice
        "local4",
        "8710",
    )
    assert m["message"] == "%% It's time to make the do-nuts."


def test_rfc5424_examples_3_and_4_structured_data_is_kept() -> None:
    frame = (
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
        b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
        b'[examplePriority@32473 class="high"] An application event log entry...'
    )
    m = parse_message(frame, "10.0.0.9", NOW)
    assert m["structured_data"] == {
        "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"},
        "examplePriority@32473": {"class": "high"},
    }
    assert (m["service"], m["message"]) == ("evntslog", "An application event log entry...")
    escaped = b'<14>1 - - app - - [x@1 q="a \\"b\\" \\] \\\\"] text'
    m = parse_message(escaped, "10.0.0.9", NOW)
    assert m["structured_data"] == {"x@1": {"q": 'a "b" ] \\'}} and m["message"] == "text"


def test_rfc5424_nil_values_fall_back() -> None:
    m = parse_message(b"<15>1 - - - - - -", "10.0.0.9", NOW)
    assert {k: m[k] for k in STANDARD} == {
        "ts": "2026-12-02T12:00:00.000Z",  # received
        "level": "DEBUG",
        "service": "",
        "host": "10.0.0.9",  # the sender's address
        "message": "",
    }


def test_rfc3164_examples() -> None:
    m = parse_message(
        b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
        "10.0.0.9",
        NOW,
    )
    assert {k: m[k] for k in STANDARD} == {
        "ts": "2026-10-11T22:14:15.000Z",  # no year or zone: UTC, this year
        "level": "FATAL",
        "service": "su",
        "host": "mymachine",
        "message": "'su root' failed for lonvick on /dev/pts/8",
    }
    assert m["syslog"] == "rfc3164"
    # A TAG with a pid, a space-padded day, and a year that must be last year's.
    m = parse_message(b"<13>Dec  9 23:59:59 web-3 nginx[812]: GET /", "10.0.0.9", NOW)
    assert (m["ts"], m["service"], m["procid"], m["host"], m["message"]) == (
        "2025-12-09T23:59:59.000Z",
        "nginx",
        "812",
        "web-3",
        "GET /",
    )
    # rsyslog's forwarding format puts an RFC 3339 stamp where 3164 has its own.
    m = parse_message(b"<11>2026-12-02T10:00:00.5+01:00 db cron: done", "10.0.0.9", NOW)
    assert (m["ts"], m["level"], m["host"], m["service"]) == (
        "2026-12-02T09:00:00.500Z",
        "ERROR",
        "db",
        "cron",
    )


def test_what_is_not_syslog_is_kept_as_a_raw_message() -> None:
    for frame in (b"no header at all", b"<999>out of range", b"\xff\xfe<13>"):
        m = parse_message(frame, "10.0.0.9", NOW)
        assert m["syslog"] == "raw" and m["level"] == "INFO" and m["host"] == "10.0.0.9"
        assert m["message"] == frame.decode("utf-8", "replace")
    m = parse_message(b"<13>Feb 30 10:00:00 h app: x", "10.0.0.9", NOW)
    assert m["ts"] == "2026-12-02T12:00:00.000Z" and m["ts_raw"] == "Feb 30 10:00:00"


@pytest.mark.parametrize(
    ("pri", "level"),
    [(0, "FATAL"), (2, "FATAL"), (3, "ERROR"), (4, "WARN"), (5, "INFO"), (6, "INFO"), (7, "DEBUG")],
)
def test_severity_makes_the_level(pri: int, level: str) -> None:
    assert parse_message(b"<%d>1 - - - - - - x" % (184 + pri), "", NOW)["level"] == level
    assert parse_message(b"<%d>1 - - - - - - x" % (184 + pri), "", NOW)["facility"] == "local7"


def test_rfc6587_octet_counting_and_newlines_frame_by_frame() -> None:
    framer = Framer(max_frame=100)
    # The RFC's example frames, a newline-ended one between, and a length cut across reads.
    assert framer.feed(b"5 hello11 hello world<13>a line\r\n1") == [
        b"hello",
        b"hello world",
        b"<13>a line",
    ]
    assert framer.feed(b"0 0123") == []
    assert framer.feed(b"456789") == [b"0123456789"]
    assert framer.rest() is None


def test_oversize_frames_are_skipped_and_counted_never_held() -> None:
    framer = Framer(max_frame=100)
    assert framer.feed(b"150 " + b"x" * 60) == []
    assert len(framer.buf) == 0  # nothing of it kept
    assert framer.feed(b"x" * 90 + b"3 abc") == [b"abc"]
    assert framer.feed(b"y" * 500) == [] and len(framer.buf) == 0
    assert framer.feed(b"yy\n<1>ok\n") == [b"<1>ok"]
    assert framer.oversize == 2


def test_a_last_line_without_its_newline_is_a_message_a_cut_frame_is_not() -> None:
    framer = Framer(max_frame=100)
    framer.feed(b"<13>tail")
    assert framer.rest() == b"<13>tail"
    framer.feed(b"20 <13>cut")
    assert framer.rest() is None


frames = st.lists(st.binary(min_size=1, max_size=60), min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(frames=frames, cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=10))
def test_octet_counted_frames_survive_any_split(frames: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(b"%d %s" % (len(f), f) for f in frames)
    framer = Framer(max_frame=1000)
    got: list[bytes] = []
    last = 0
    for cut in sorted(c % (len(stream) + 1) for c in cuts) + [len(stream)]:
        got += framer.feed(stream[last:cut])
        last = cut
    assert got == frames


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=300), max_size=10))
def test_any_bytes_make_frames_or_nothing_and_memory_stays_bounded(chunks: list[bytes]) -> None:
    framer = Framer(max_frame=100)
    for chunk in chunks:
        for frame in framer.feed(chunk):
            assert 0 < len(frame) <= 100
            m = parse_message(frame, "10.0.0.9", NOW)
            assert all(isinstance(m[k], str) for k in STANDARD)
            assert m["level"] in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
        assert len(framer.buf) <= 100 + 10


header = st.builds(
    lambda pri, frac, zone, host, app, procid, msgid: (
        b"<%d>1 2026-12-02T16:20:00%s%s %s %s %s %s -" % (pri, frac, zone, host, app, procid, msgid)
    ),
    st.integers(0, 200),
    st.sampled_from([b"", b".5", b".123456", b".", b".12x"]),
    st.sampled_from([b"Z", b"+00:00", b"+01:00", b""]),
    *[st.sampled_from([b"-", b"web-7", b"a\xc3\xa9"]) for _ in range(4)],
)
tails = st.sampled_from([b"", b" hello", b" \xef\xbb\xbfbom", b" line end\n", b"x", b" [sd]"])
octet_frames = st.lists(st.builds(lambda h, t: h + t, header, tails), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(
    frames=st.lists(octet_frames | st.lists(st.binary(max_size=40), max_size=3), max_size=3),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=6),
    newline=st.booleans(),
)
def test_the_one_match_path_reads_every_frame_as_the_general_one(
    frames: list[list[bytes]], cuts: list[int], newline: bool
) -> None:
    flat = [f for group in frames for f in group]
    stream = b"".join(
        f + b"\n" if newline and b"\n" not in f else b"%d %s" % (len(f), f) for f in flat
    )
    pieces, last = [], 0
    for cut in sorted(c % (len(stream) + 1) for c in cuts) + [len(stream)]:
        pieces.append(stream[last:cut])
        last = cut
    general, fast = Framer(max_frame=200), Framer(max_frame=200)
    expected = [parse_message(f, "10.0.0.9", NOW) for p in pieces for f in general.feed(p)]
    assert [m for p in pieces for m in fast.messages(p, "10.0.0.9", NOW)] == expected
    assert (fast.buf, fast.oversize) == (general.buf, general.oversize)


def test_streams_make_packets_of_500_then_what_gathered_then_the_last_line() -> None:
    streams = Streams("syslog-abc", max_frame=1000)
    data = b"".join(b"<14>1 - h app - - - m%d\n" % i for i in range(1200)) + b"<14>tail"
    made, oversize, gathering = streams.feed(7, data, "10.0.0.9", NOW)
    assert [n for _, n, _, _ in made] == [500, 500] and (oversize, gathering) == (0, 200)
    flushed, _, _ = streams.flush(7)
    assert [n for _, n, _, _ in flushed] == [200]
    closed, _, _ = streams.close(7, "10.0.0.9", NOW)
    assert [n for _, n, _, _ in closed] == [1] and 7 not in streams.streams
    every = made + flushed + closed
    assert [pid for pid, _, _, _ in every] == [f"syslog-abc-{i}" for i in range(1, 5)]
    # Each body is a packet the distributor would accept, messages in the order sent.
    packets = [parse_packet(orjson.loads(body)) for _, _, body, _ in every]
    assert [p.id for p in packets] == [pid for pid, _, _, _ in every]
    texts = [m["message"] for _, _, body, _ in every for m in orjson.loads(body)["messages"]]
    assert texts == [f"m{i}" for i in range(1200)] + ["tail"]
    assert all(orjson.loads(body)["emitter"] == "syslog" for _, _, body, _ in every)
