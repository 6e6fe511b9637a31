from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from logdist.errors import InvalidPacket, MalformedJSON
from logdist.formats.packet import (
    frame_ndjson,
    one_a_line,
    packet_ids,
    parse_batch,
    parse_one,
    parse_packet,
    read_lines,
    total,
)

MSG = {"ts": "2026-01-01T00:00:00Z", "level": "INFO", "service": "s", "host": "h", "message": "m"}


def test_packet_bytes_are_forwarded_as_sent() -> None:
    raw = b'{"packetId": "p1", "emitter": "e1", "messages": [{"message": "x"}], "extra": {"k": 1}}'
    packet = parse_one(raw)
    assert (packet.id, packet.emitter, packet.messages) == ("p1", "e1", 1)
    assert packet.body == raw


def test_missing_packet_id_is_assigned_and_written_into_the_packet() -> None:
    packet = parse_one(b'{"messages": [{}, {}]}', new_id=lambda: "fresh")
    assert packet.id == "fresh" and packet.messages == 2
    assert orjson.loads(packet.body) == {"messages": [{}, {}], "packetId": "fresh"}


def test_pretty_printed_packets_are_put_on_one_line() -> None:
    raw = orjson.dumps({"packetId": "p", "messages": [MSG]}, option=orjson.OPT_INDENT_2)
    packet = parse_one(raw)
    assert b"\n" not in packet.body
    assert orjson.loads(packet.body) == orjson.loads(raw)


@pytest.mark.parametrize(
    ("obj", "error"),
    [
        ([], "must be a JSON object, got array"),
        ("x", "must be a JSON object, got string"),
        ({}, "no 'messages'"),
        ({"messages": None}, "no 'messages'"),
        ({"messages": "hi"}, "must be a list of objects, got string"),
        ({"messages": []}, "is empty"),
        ({"messages": [MSG, 3]}, r"messages\[1\] must be an object, got number"),
        ({"messages": [MSG], "packetId": 7}, "'packetId' must be a non-empty string"),
        ({"messages": [MSG], "packetId": ""}, "'packetId' must be a non-empty string"),
        ({"messages": [MSG], "packetId": "x" * 129}, "at most 128"),
    ],
)
def test_bad_packets_say_what_is_wrong(obj: Any, error: str) -> None:
    with pytest.raises(InvalidPacket, match=error):
        parse_packet(obj)


@pytest.mark.parametrize("raw", [b"", b"{", b'{"messages": [}', b"\xff\xfe", b"nul"])
def test_malformed_json_is_its_own_error(raw: bytes) -> None:
    with pytest.raises(MalformedJSON, match="not valid JSON"):
        parse_one(raw)


def test_non_string_emitter_is_kept_but_not_used_as_a_name() -> None:
    packet = parse_one(b'{"packetId": "p", "emitter": 5, "messages": [{}]}')
    assert packet.emitter is None
    assert orjson.loads(packet.body)["emitter"] == 5


def test_ndjson_batch_keeps_each_line_and_skips_blank_ones() -> None:
    lines = [
        b'{"packetId": "a", "messages": [{}]}',
        b"",
        b'{"packetId": "b", "messages": [{}, {}]}',
    ]
    packets = parse_batch(b"\n".join(lines) + b"\n", ndjson=True)
    assert [(p.id, p.messages, p.body) for p in packets] == [("a", 1, lines[0]), ("b", 2, lines[2])]


def test_json_array_batch() -> None:
    body = orjson.dumps([{"packetId": "a", "messages": [MSG]}, {"messages": [MSG, MSG]}])
    packets = parse_batch(body, ndjson=False, new_id=lambda: "z")
    assert [(p.id, p.messages) for p in packets] == [("a", 1), ("z", 2)]


@pytest.mark.parametrize(
    ("body", "ndjson", "error"),
    [
        (b'{"messages": [{}]}\n{"messages": []}', True, "line 2: 'messages' is empty"),
        (b'{"messages": [{}]}\n{oops', True, "line 2 is not valid JSON"),
        (b"[]", False, "no packets"),
        (b"\n\n", True, "no packets"),
        (b'{"messages": [{}]}', False, "must be a JSON array"),
        (b'[{"messages": [{}]}, 1]', False, r"packet \[1\]: a packet must be a JSON object"),
    ],
)
def test_a_bad_batch_is_refused_whole_naming_the_first_bad_packet(
    body: bytes, ndjson: bool, error: str
) -> None:
    with pytest.raises((InvalidPacket, MalformedJSON), match=error):
        parse_batch(body, ndjson=ndjson)


json_values = st.recursive(
    # orjson reads integers beyond 64 bits as floats, so none such arrive off the wire.
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    extra=st.dictionaries(
        st.text(max_size=8).filter(lambda k: k not in ("messages", "packetId")),
        json_values,
        max_size=5,
    ),
    messages=st.lists(
        st.dictionaries(st.text(max_size=5), json_values, max_size=4), min_size=1, max_size=5
    ),
)
def test_any_valid_packet_round_trips_verbatim_through_a_batch(
    extra: dict[str, Any], messages: list[dict[str, Any]]
) -> None:
    obj = {**extra, "packetId": "p", "messages": messages}
    packets = parse_batch(orjson.dumps([obj]), ndjson=False)
    again = parse_batch(frame_ndjson(packets), ndjson=True)
    assert orjson.loads(again[0].body) == obj
    assert again[0].messages == len(messages)


def ndjson(n: int, messages: int = 10, emitters: tuple[str, ...] = ("e1",)) -> bytes:
    return (
        b"\n".join(
            orjson.dumps(
                {
                    "packetId": f"p{i}",
                    "emitter": emitters[i % len(emitters)],
                    "messages": [MSG] * messages,
                }
            )
            for i in range(n)
        )
        + b"\n"
    )


def test_batch_packets_travel_in_runs_bounded_by_messages_and_count() -> None:
    body = ndjson(250, messages=10)
    runs = parse_batch(body, ndjson=True, run=256)
    assert [r.count for r in runs] == [102, 102, 46]  # RUN_MESSAGES = 1024 messages a run
    assert [r.messages for r in runs] == [1020, 1020, 460]
    assert packet_ids(runs) == [f"p{i}" for i in range(250)]
    assert total(runs) == 250 and runs[0].emitter == "e1"
    # Each run's body is its packets' own lines, and opening it gives the packets back.
    assert frame_ndjson(runs) == body
    parts = [p for r in runs for p in r.parts()]
    assert [(p.id, p.messages, p.body) for p in parts] == [
        (p.id, p.messages, p.body) for p in parse_batch(body, ndjson=True)
    ]
    assert [r.count for r in parse_batch(body, ndjson=True, run=50)] == [50] * 5


@pytest.mark.parametrize("trailing", [b"", b"\n"])
def test_a_request_that_fits_one_run_travels_as_its_own_bytes(trailing: bytes) -> None:
    body = ndjson(100, messages=10).rstrip(b"\n") + trailing
    (run,) = parse_batch(body, ndjson=True, run=100)
    assert (run.count, run.messages, run.emitter) == (100, 1000, "e1")
    assert run.body == body.rstrip(b"\n") and frame_ndjson([run]) == body.rstrip(b"\n") + b"\n"
    if not trailing:
        assert run.body is body  # not copied
    assert [p.id for p in run.parts()] == [f"p{i}" for i in range(100)]
    (one,) = parse_batch(ndjson(1), ndjson=True, run=100)
    assert one.count == 1 and one.ids is None  # a lone packet is no run


def test_a_run_from_several_emitters_names_each_packets_own() -> None:
    runs = parse_batch(ndjson(4, messages=1, emitters=("e1", "e2")), ndjson=True, run=10)
    assert len(runs) == 1 and runs[0].emitter is None
    assert runs[0].emitters == ["e1", "e2", "e1", "e2"]
    assert [p.emitter for p in runs[0].parts()] == ["e1", "e2", "e1", "e2"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"packetId":"a","messages":[{}]}\n\n{"packetId":"b","messages":[{}]}\n',  # blank line
        b'{"packetId":"a","messages":[{}]}\r\n{"packetId":"b","messages":[{}]}\r\n',  # CRLF
        b'{"messages":[{}]}\n{"packetId":"b","messages":[{}]}\n',  # an id to assign
    ],
)
def test_batches_off_the_fast_path_are_taken_packet_by_packet(body: bytes) -> None:
    packets = parse_batch(body, ndjson=True, run=10, new_id=lambda: "a")
    assert [(p.id, p.count) for p in packets] == [("a", 1), ("b", 1)]
    assert all(b"\r" not in p.body for p in packets)


def test_a_line_holding_two_packets_is_refused_not_split() -> None:
    body = b'{"packetId":"a","messages":[{}]},{"packetId":"b","messages":[{}]}\n'
    with pytest.raises(MalformedJSON, match="line 1"):
        parse_batch(body, ndjson=True, run=10)


def test_lines_cannot_merge_into_one_packet_to_hide_another() -> None:
    # Joined, these four lines would parse as three packets; line by line two are not JSON.
    body = (
        b'{"packetId":"a","messages":[{}\n'
        b"{}]}\n"
        b'{"packetId":"b","messages":[{}]},{"packetId":"c","messages":[{}]}\n'
        b'{"packetId":"d","messages":[{}]}\n'
    )
    with pytest.raises(MalformedJSON, match="line 1"):
        parse_batch(body, ndjson=True, run=10)


@pytest.mark.parametrize("crlf", [False, True])
def test_a_counting_read_finds_what_the_line_read_finds(crlf: bool) -> None:
    body = ndjson(50, messages=3, emitters=("e1", "e2", "e3"))
    if crlf:
        body = body.replace(b"\n", b"\r\n")
    counted = read_lines(body, keep_lines=False)
    assert counted is not None and not counted.exact
    packets = parse_batch(body, ndjson=True)
    assert counted.ids == [p.id for p in packets]
    assert counted.emitters == [p.emitter for p in packets]
    assert counted.counts == [p.messages for p in packets]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\n\n",
        b'{"packetId":"a","messages":[{}]}\n{"packetId":"b","messages":[]}\n',  # no messages
        b'{"packetId":"a","messages":[{}]}\n{"packetId":"b","messages":[1]}\n',  # not objects
        b'{"messages":[{}]}\n',  # no id: the line-by-line way assigns one
        b'{"packetId":"a","messages":[{}]}\n{"packetId":"b",\n',  # cut short
    ],
)
def test_a_counting_read_leaves_anything_off_its_path_to_the_full_read(body: bytes) -> None:
    assert read_lines(body, keep_lines=False) is None


@pytest.mark.parametrize(
    ("body", "exact"),
    [
        (b'{"packetId":"a","messages":[{}]}\n{"packetId":"b","messages":[{}]}\n', True),
        (b'{"packetId":"a","messages":[{}]}\n{"packetId":"b","messages":[{}]}', True),
        (b'{"packetId":"a","messages":[{}]}\n', True),
        # One packet over two lines, and two packets on one line.
        (b'{"packetId":"a",\n"messages":[{}]}\n', False),
        (b'{"packetId":"a","messages":[{}]}{"packetId":"b","messages":[{}]}\n', False),
        (b'{"packetId":"a","messages":[{}]} {"packetId":"b","messages":[{}]}\n', False),
        # Both at once: line and packet counts agree, the lines do not hold the packets.
        (
            b'{"packetId":"a","messages":[{}]}{"packetId":"b",\n"messages":[{}]}'
            b'\n{"packetId":"c","messages":[{}]}',
            False,
        ),
        # Spaces, a blank line, CRLF: the line-by-line way takes those.
        (b' {"packetId":"a","messages":[{}]}\n', False),
        (b'{"packetId":"a","messages":[{}]} \n', False),
        (b'{"packetId":"a","messages":[{}]}\n\n{"packetId":"b","messages":[{}]}\n', False),
        (b'{"packetId":"a","messages":[{}]}\r\n{"packetId":"b","messages":[{}]}\r\n', False),
    ],
)
def test_a_line_read_takes_only_one_packet_a_line(body: bytes, exact: bool) -> None:
    read = read_lines(body)
    assert (read is not None) == exact
    if read is not None:
        assert read.lines() == [line for line in body.split(b"\n") if line]
        assert [orjson.loads(line)["packetId"] for line in read.lines()] == read.ids
        # The fast read and the batch agree: one run, the request's bytes, the same ids.
        (run,) = parse_batch(body, ndjson=True, run=10)
        assert run.body == body.rstrip(b"\n") and (run.ids or [run.id]) == read.ids


def test_one_a_line_counts_boundaries_not_just_newlines() -> None:
    two = b'{"packetId":"a","messages":[{}]}\n{"packetId":"b","messages":[{}]}'
    assert one_a_line(two, 2)
    assert not one_a_line(two, 3) and not one_a_line(two, 1)


@given(
    count=st.integers(1, 6),
    # Where a newline or a space goes: after which byte of the canonical body.
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from([b"\n", b" "])), max_size=4),
    drops=st.lists(st.integers(0, 5), max_size=2),
)
def test_an_exact_read_never_misplaces_a_packet(
    count: int, edits: list[tuple[int, bytes]], drops: list[int]
) -> None:
    objs = [{"packetId": f"p{i}", "messages": [{"n": i}, {"k": [1, 2]}]} for i in range(count)]
    body = bytearray(b"\n".join(orjson.dumps(o) for o in objs))
    for where, ws in sorted(edits, reverse=True):
        # Whitespace only where JSON allows it: after a comma, a colon or a bracket.
        at = where % len(body)
        if bytes(body[at : at + 1]) in (b",", b":", b"[", b"{"):
            body[at + 1 : at + 1] = ws
    for drop in drops:  # join two lines into one
        at = body.find(b"\n", drop)
        if at != -1:
            del body[at]
    read = read_lines(bytes(body))
    if read is not None:
        assert [orjson.loads(line) for line in read.lines()] == objs
        assert read.ids == [o["packetId"] for o in objs]


def test_an_otlp_request_kept_as_it_came_is_read_back_among_packets() -> None:
    from datetime import UTC, datetime

    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    from logdist.formats.otlp import otlp_kept, unwrap
    from logdist.formats.packet import opened_envelope, parse_stored

    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add()
    record.body.string_value = "kept"
    raw = request.SerializeToString()
    ((pid, count, body, emitter),) = otlp_kept(raw, "protobuf", "10.0.0.7", datetime.now(UTC))
    assert count == 1 and opened_envelope(body)[0] == raw  # the request's own bytes
    assert emitter == "otlp:10.0.0.7"  # no service.name: the sending host
    plain = b'{"packetId":"p1","messages":[{"m":1}]}'
    kept, packet = parse_stored(body + b"\n" + plain)  # a cluster message holding both
    assert (kept.id, kept.messages, kept.otlp, kept.emitter) == (pid, 1, True, emitter)
    assert (packet.id, packet.otlp) == ("p1", False)
    (message,) = orjson.loads(unwrap(body))["messages"]
    assert (message["message"], message["host"]) == ("kept", "10.0.0.7")
    with pytest.raises(InvalidPacket):
        parse_packet(orjson.loads(body))  # an emitter cannot send one: it has no messages
