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

from logdist.core.records import RECORDS_PER_PACKET, message_of, parse_records, records_packets
from logdist.errors import InvalidPacket, MalformedJSON

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
