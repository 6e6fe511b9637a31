"""Flat JSON records as Fluent Bit's `http` output and Vector's `http` sink send them, made
into logdist messages. The bodies are built as their documentation shows:

- Fluent Bit, https://docs.fluentbit.io/manual/data-pipeline/outputs/output_formats and
  https://docs.fluentbit.io/manual/pipeline/outputs/http: `format json` is one JSON array of
  records, `json_lines` one record a line; the time goes under `json_date_key` (default
  `date`) as `json_date_format` (default `double`: seconds since the epoch; or `iso8601`);
  the record's own keys (`log`, …) beside it.
- Vector, https://vector.dev/docs/reference/configuration/sinks/http/: log events encoded
  with `codec = "json"` carry `message`, `timestamp` (RFC 3339), `host` and `source_type`,
  as a JSON array, or one a line with newline-delimited framing.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logdist.errors import InvalidPacket, LogdistError, MalformedJSON
from logdist.formats.records import RECORDS_PER_PACKET, message_of, parse_records, records_packets

NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)

FLUENT_BIT_JSON = orjson.dumps(
    [
        {"date": 1398282091.0, "log": "Core: initialization and 32 bit fixes.", "author": "E"},
        {"date": 1422350608.5, "log": "Initial import.", "level": "warning", "host": "web-1"},
    ]
)
FLUENT_BIT_JSON_LINES = (
    b'{"date":"2018-05-30T09:39:52.000681Z","log":"started","severity":"err"}\n'
    b'{"date":"2018-05-30T09:39:53.000681Z","log":"ready","kubernetes":{"pod":"api-0"}}\n'
)
VECTOR_JSON = orjson.dumps(
    [
        {
            "message": "GET /index.html 200",
            "timestamp": "2026-12-02T11:59:58.123456Z",
            "host": "edge-3",
            "source_type": "file",
            "service": "nginx",
        }
    ]
)


def test_fluent_bit_json_records_get_the_standard_fields_and_keep_their_own() -> None:
    first, second = (message_of(r, NOW) for r in parse_records(FLUENT_BIT_JSON))
    assert first == {
        "ts": "2014-04-23T19:41:31.000Z",
        "level": "INFO",
        "service": "",
        "host": "",
        "message": "Core: initialization and 32 bit fixes.",
        "author": "E",
    }
    assert (second["ts"], second["level"], second["host"]) == (
        "2015-01-27T09:23:28.500Z",
        "WARN",
        "web-1",
    )
    assert "log" not in second and "date" not in second  # mapped, not repeated


def test_fluent_bit_json_lines_with_iso8601_dates() -> None:
    first, second = (message_of(r, NOW) for r in parse_records(FLUENT_BIT_JSON_LINES))
    assert (first["ts"], first["level"], first["message"]) == (
        "2018-05-30T09:39:52.000Z",
        "ERROR",
        "started",
    )
    assert second["kubernetes"] == {"pod": "api-0"}


def test_vector_json_events() -> None:
    (event,) = (message_of(r, NOW) for r in parse_records(VECTOR_JSON))
    assert event == {
        "ts": "2026-12-02T11:59:58.123Z",
        "level": "INFO",
        "service": "nginx",
        "host": "edge-3",
        "message": "GET /index.html 200",
        "source_type": "file",
    }


@pytest.mark.parametrize(
    ("value", "level"),
    [("TRACE", "TRACE"), ("debug", "DEBUG"), ("Warning", "WARN"), ("crit", "FATAL")],
)
def test_levels_are_normalised(value: str, level: str) -> None:
    assert message_of({"level": value, "msg": "x"}, NOW)["level"] == level


def test_what_cannot_be_read_falls_back_and_is_kept() -> None:
    out = message_of({"level": 5, "time": "yesterday", "message": {"a": 1}}, NOW)
    assert (out["level"], out["level_raw"]) == ("INFO", 5)
    assert (out["ts"], out["ts_raw"]) == ("2026-12-02T12:00:00.000Z", "yesterday")
    assert out["message"] == '{"a":1}'
    assert message_of({}, NOW)["ts"] == "2026-12-02T12:00:00.000Z"  # no time: received
    # Nothing is dropped: a standard name that could not be used is kept as NAME_raw.
    out = message_of({"host": 7, "service": ["a"], "ts": "2026-01-01T00:00:00Z", "time": 1}, NOW)
    assert (out["host"], out["host_raw"], out["service"], out["service_raw"]) == ("", 7, "", ["a"])
    assert (out["ts"], out["time"]) == ("2026-01-01T00:00:00.000Z", 1)
    # Dates UTC cannot hold, and epochs out of range, are unreadable too.
    for odd in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", -1, 1e300, True):
        assert message_of({"time": odd}, NOW)["ts_raw"] == odd


def test_a_request_is_packets_whose_ids_come_from_its_bytes() -> None:
    body = b"\n".join(orjson.dumps({"log": f"line {i}"}) for i in range(1200))
    packets = records_packets(body, NOW)
    assert [p.messages for p in packets] == [RECORDS_PER_PACKET, RECORDS_PER_PACKET, 200]
    again = records_packets(body, NOW)
    assert [p.id for p in again] == [p.id for p in packets]  # a retry is deduplicated
    assert all(p.emitter == "records" for p in packets)
    other = records_packets(body + b"\n{}", NOW)
    assert other[0].id != packets[0].id


@pytest.mark.parametrize(
    ("body", "error", "says"),
    [
        (b"", InvalidPacket, "no records"),
        (b"[]", InvalidPacket, "no records"),
        (b"[1, {}]", InvalidPacket, r"record \[0\] must be a JSON object"),
        (b'{"log": "a"}\n[2]', InvalidPacket, "line 2 must be a JSON object"),
        (b'{"log": "a"}\n{"log":', MalformedJSON, "line 2 is not valid JSON"),
        (b"[{", MalformedJSON, "not valid JSON"),
        (b"null", InvalidPacket, "the body must be a JSON object"),
    ],
)
def test_bad_bodies_say_what_is_wrong(body: bytes, error: type[Exception], says: str) -> None:
    with pytest.raises(error, match=says):
        parse_records(body)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=5),
    max_leaves=25,
)
record_keys = st.sampled_from(
    [
        "message",
        "log",
        "msg",
        "date",
        "timestamp",
        "@timestamp",
        "time",
        "level",
        "severity",
        "service",
        "host",
        "hostname",
        "other",
    ]
)
records = st.lists(st.dictionaries(record_keys, json_values, max_size=8), min_size=1, max_size=5)


@settings(max_examples=300, deadline=None)
@given(items=records, as_ndjson=st.booleans())
def test_any_records_make_messages_with_the_standard_fields(
    items: list[dict[str, object]], as_ndjson: bool
) -> None:
    body = b"\n".join(map(orjson.dumps, items)) if as_ndjson else orjson.dumps(items)
    (packet,) = records_packets(body, NOW)
    messages = orjson.loads(packet.body)["messages"]
    assert len(messages) == len(items) == packet.messages
    for m in messages:
        assert m["level"] in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
        assert datetime.fromisoformat(m["ts"].replace("Z", "+00:00")).tzinfo is not None
        assert all(isinstance(m[k], str) for k in ("service", "host", "message"))


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=200) | json_values.map(orjson.dumps))
def test_any_body_is_records_or_a_clear_refusal(body: bytes) -> None:
    try:
        records_packets(body, NOW)
    except LogdistError as exc:
        assert exc.status in (400, 422) and str(exc)
