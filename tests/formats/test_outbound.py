"""Each analyzer format writes a message as docs/outputs.md says, field by field."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from logdist.core.delivery import delivery_from
from logdist.formats.encoding import encode
from logdist.formats.otlp import value_of
from logdist.formats.outbound import epoch_ns, label_string, timestamp

NOW = 1_800_000_000_000_000_000
TS = "2026-12-06T19:30:15.123Z"
TS_NS = 1_796_585_415_123_000_000
PACKET = orjson.dumps(
    {
        "packetId": "p1",
        "emitter": "e1",
        "messages": [
            {
                "ts": TS,
                "level": "WARN",
                "service": "api",
                "host": "h1",
                "message": 'card "declined"]',
                "user": "bob",
                "emitter": "clash",
            },
            {"ts": "not a time", "level": "INFO", "service": "db", "host": "h2", "message": 7},
        ],
    }
)
# A part of a packet (some of its messages) keeps their original indexes.
PART = orjson.dumps(
    {"packetId": "p2", "indexes": [5], "messages": [{"ts": TS, "level": "ERROR", "message": "x"}]}
)


def made(fmt: str, **options: object) -> tuple[Any, ...]:
    settings = delivery_from({"format": fmt, **options}).settings()
    return encode(fmt, settings, [PACKET, PART], NOW)


def lines(body: object) -> list[dict[str, Any]]:
    assert isinstance(body, bytes)
    return [orjson.loads(line) for line in body.splitlines()]


def test_times_are_read_from_rfc3339_and_written_as_asked() -> None:
    assert epoch_ns(TS) == TS_NS
    assert epoch_ns("2026-12-06T20:30:15.123+01:00") == TS_NS
    assert epoch_ns(1796585415.5) == 1_796_585_415_500_000_000
    assert epoch_ns("yesterday") is None and epoch_ns(None) is None
    assert timestamp(TS, "rfc3339") == TS
    assert timestamp(TS, "unix") == 1796585415.123
    assert timestamp(TS, "unix_ms") == 1796585415123
    assert timestamp(TS, "clickhouse") == "2026-12-06 19:30:15"
    assert timestamp("yesterday", "unix") == "yesterday"  # kept: the analyzer says what it thinks


def test_records_are_flat_with_the_packet_fields_and_the_free_ones() -> None:
    body, count = made("records", timestamp_format="unix_ms")
    rows = lines(body)
    assert count == 3
    assert rows[0] == {
        "ts": 1796585415123,
        "level": "WARN",
        "service": "api",
        "host": "h1",
        "message": 'card "declined"]',
        "emitter": "e1",
        "packetId": "p1",
        "index": 0,
        "user": "bob",
        "_emitter": "clash",  # a free field named like a mapped one keeps a `_`
    }
    assert rows[1]["ts"] == "not a time" and rows[1]["index"] == 1
    assert (rows[2]["packetId"], rows[2]["index"], rows[2]["emitter"]) == ("p2", 5, None)


def test_elasticsearch_creates_each_document_under_a_stable_id() -> None:
    body, count = made("elasticsearch", index="logs-app")
    out = lines(body)
    assert count == 3 and len(out) == 6
    assert out[0] == {"create": {"_index": "logs-app", "_id": "p1:0"}}
    assert out[1] == {
        "@timestamp": TS,
        "message": 'card "declined"]',
        "log": {"level": "WARN"},
        "service": {"name": "api"},
        "host": {"name": "h1"},
        "logdist": {"emitter": "e1", "packetId": "p1", "index": 0},
        "user": "bob",
        "emitter": "clash",
    }
    assert out[3]["message"] == "7"  # a message that is not text is its JSON
    assert out[4]["create"]["_id"] == "p2:5"  # a part's record keeps its id


def test_splunk_hec_events_carry_time_in_seconds_and_the_options() -> None:
    body, count = made("splunk-hec", index="main", sourcetype="logdist", host="gw")
    events = lines(body)
    assert count == 3
    assert events[0] == {
        "time": 1796585415.123,
        "host": "gw",
        "source": "api",
        "sourcetype": "logdist",
        "index": "main",
        "event": {
            "message": 'card "declined"]',
            "level": "WARN",
            "service": "api",
            "logdist": {"emitter": "e1", "packetId": "p1", "index": 0},
            "user": "bob",
            "emitter": "clash",
        },
    }
    assert "time" not in events[1]  # unreadable: HEC stamps it on arrival


def test_loki_streams_by_label_with_metadata() -> None:
    body, count, keys = made("loki", labels="service,level")
    push = orjson.loads(body)
    assert count == 3
    streams = {label_string(tuple(s["stream"].items())): s["values"] for s in push["streams"]}
    first = streams['{level="WARN", service="api"}']
    assert first == [
        [
            str(TS_NS),
            'card "declined"]',
            {"emitter": "e1", "packetId": "p1", "index": "0", "host": "h1", "user": "bob",
             "_emitter": "clash"},
        ]
    ]  # fmt: skip
    assert streams['{level="INFO", service="db"}'][0][0] == str(NOW)  # unreadable: now
    assert keys[0] == ('{level="WARN", service="api"}', TS_NS)
    assert keys[2] == ('{level="ERROR"}', TS_NS)  # no service: that label is left out


def test_otlp_decodes_to_the_documented_mapping() -> None:
    body, count = made("otlp")
    request = ExportLogsServiceRequest()
    request.ParseFromString(body)
    assert count == 3
    first = request.resource_logs[0]
    resource = {kv.key: value_of(kv.value) for kv in first.resource.attributes}
    assert resource == {"service.name": "api", "host.name": "h1"}
    (scope,) = first.scope_logs
    assert scope.scope.name == "logdist"
    (record,) = scope.log_records
    assert record.time_unix_nano == TS_NS and record.observed_time_unix_nano == NOW
    assert (record.severity_number, record.severity_text) == (13, "WARN")
    assert record.body.string_value == 'card "declined"]'
    attributes = {kv.key: value_of(kv.value) for kv in record.attributes}
    assert attributes == {
        "user": "bob",
        "emitter": "clash",
        "logdist.emitter": "e1",
        "logdist.packet_id": "p1",
        "logdist.index": 0,
    }
    last = request.resource_logs[-1].scope_logs[0].log_records[0]
    assert last.severity_number == 17
    assert {kv.key: value_of(kv.value) for kv in last.attributes}["logdist.index"] == 5


def test_syslog_frames_are_octet_counted_rfc5424_with_escaped_sd() -> None:
    body, count = made("syslog", facility="local0")
    assert isinstance(body, bytes) and count == 3
    frames = []
    rest = body
    while rest:
        size, _, rest = rest.partition(b" ")
        frames.append(rest[: int(size)].decode())
        rest = rest[int(size) :]
    assert frames[0] == (
        '<132>1 2026-12-06T19:30:15.123Z h1 api - e1 [logdist@32473 packetId="p1" index="0"'
        ' user="bob" emitter="clash"] card "declined"]'
    )
    assert frames[1].startswith("<134>1 - h2 db - e1 [")  # INFO, no readable time
    assert frames[2].startswith("<131>1 2026-12-06T19:30:15.123Z - - - - [")


def test_an_sd_value_escapes_quote_backslash_and_bracket() -> None:
    packet = orjson.dumps({"packetId": "p", "messages": [{"message": "m", "k": 'a"b\\c]'}]})
    body, _ = encode("syslog", {"facility": "user"}, [packet], NOW)
    assert b'k="a\\"b\\\\c\\]"' in body


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"format": "loki", "index": "x"}, "format loki has no option 'index'"),
        ({"format": "records", "timestamp_format": "iso"}, "timestamp_format must be one of"),
        ({"format": "loki", "labels": "service,9bad"}, "is not a label name"),
        ({"format": "syslog", "facility": "local9"}, "facility must be one of"),
    ],
)
def test_a_bad_option_names_itself(values: dict[str, object], message: str) -> None:
    from logdist.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match=message):
        delivery_from(values)
