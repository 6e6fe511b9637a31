from __future__ import annotations

from typing import Any

import pytest

from logdist.core.delivery import (
    DELIVERED,
    FAILED,
    REFUSED,
    Delivery,
    delivery_from,
    merge_headers,
    outcome,
    parse_header_line,
)
from logdist.errors import InvalidRequest


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, Delivery()),
        ({"format": "ndjson"}, Delivery(format="ndjson")),
        (
            {"format": "json-array", "compression": "gzip"},
            Delivery("json-array", compression="gzip"),
        ),
        (
            {"headers": {"Authorization": "Bearer x", "X-Scope": " a "}},
            Delivery(headers=(("Authorization", "Bearer x"), ("X-Scope", "a"))),
        ),
        ({"health": "passive"}, Delivery(health="passive")),
        ({"health_url": "http://h:1/ready"}, Delivery(health_url="http://h:1/ready")),
        ({"health_url": None}, Delivery()),
        ({"headers": None}, Delivery()),
    ],
)
def test_delivery_settings_are_read_from_a_table(
    values: dict[str, Any], expected: Delivery
) -> None:
    assert delivery_from(values) == expected


@pytest.mark.parametrize(
    ("values", "field", "words"),
    [
        ({"format": "xml"}, "format", "auto, ndjson, json-array, json"),
        ({"format": 3}, "format", "got 3"),
        ({"compression": "br"}, "compression", "none, gzip"),
        ({"health": "sometimes"}, "health", "active, passive"),
        ({"health_url": "ftp://h/health"}, "health_url", "http://"),
        ({"health_url": "/health"}, "health_url", "absolute"),
        ({"headers": ["Authorization: x"]}, "headers", "object"),
        ({"headers": {"Bad Name": "x"}}, "headers", "token"),
        ({"headers": {"X-A": "a\r\nX-Injected: 1"}}, "headers", "line break"),
        ({"headers": {"X-A": 1}}, "headers", "string value"),
        ({"headers": {"Content-Type": "text/plain"}}, "headers", "set by logdist"),
        ({"headers": {"Host": "elsewhere"}}, "headers", "set by logdist"),
        ({"headers": {"X-A": "1", "x-a": "2"}}, "headers", "named twice"),
        ({"health": "passive", "health_url": "http://h/health"}, "health_url", "passive"),
    ],
)
def test_bad_delivery_settings_are_refused_naming_the_field(
    values: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        delivery_from(values)
    assert info.value.status == 422
    assert info.value.detail == {"field": field}
    assert words in info.value.message


def test_changes_apply_on_top_of_the_current_settings() -> None:
    base = Delivery("ndjson", (("A", "1"),), compression="gzip")
    changed = delivery_from({"health": "passive"}, base)
    assert changed == Delivery("ndjson", (("A", "1"),), None, "passive", "gzip")


@pytest.mark.parametrize(
    ("line", "header"),
    [
        ("Authorization: Bearer abc", ("Authorization", "Bearer abc")),
        ("X-Key:v:with:colons", ("X-Key", "v:with:colons")),
        ("X-Empty:", ("X-Empty", "")),
    ],
)
def test_a_header_line_is_name_colon_value(line: str, header: tuple[str, str]) -> None:
    assert parse_header_line(line) == header


def test_a_header_line_without_a_colon_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="no colon"):
        parse_header_line("Authorization Bearer abc")


def test_header_values_are_masked_in_views_and_kept_in_state() -> None:
    d = Delivery(headers=(("Authorization", "Bearer s3cret"),))
    assert d.to_json()["headers"] == {"Authorization": "***"}
    assert "s3cret" not in repr(d.to_json())
    assert d.to_state()["headers"] == {"Authorization": "Bearer s3cret"}
    assert delivery_from(d.to_state()) == d


def test_merging_headers_sets_replaces_case_insensitively_and_removes() -> None:
    current = (("Authorization", "old"), ("X-A", "1"))
    merged = merge_headers(current, {"authorization": "new", "X-A": None, "X-B": "2"})
    assert merged == {"authorization": "new", "X-B": "2"}


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, DELIVERED),
        (202, DELIVERED),
        (204, DELIVERED),
        (400, REFUSED),
        (401, REFUSED),
        (404, REFUSED),
        (413, REFUSED),
        (422, REFUSED),
        (408, FAILED),
        (429, FAILED),
        (500, FAILED),
        (503, FAILED),
        (301, FAILED),
    ],
)
def test_an_answer_is_delivered_failed_or_refused(status: int, kind: str) -> None:
    assert outcome(status) == kind


def test_a_formats_options_default_and_change_with_it() -> None:
    loki = delivery_from({"format": "loki"})
    assert loki.settings() == {"labels": ("service", "level")}
    assert loki.health == "passive"  # only logdist's analyzers have a /health beside /ingest
    loki = delivery_from({"labels": "service,host"}, loki)
    assert loki.option("labels") == ("service", "host")
    assert loki.to_json()["options"] == {"labels": ["service", "host"]}
    assert delivery_from(loki.to_state()) == loki  # kept and read back the same
    es = delivery_from({"format": "elasticsearch"}, loki)  # a new format: its own defaults
    assert es.options == () and es.option("index") == "logs"
    assert delivery_from({"format": "ndjson"}, es).health == "active"


def test_a_syslog_analyzer_takes_a_tcp_url_and_the_others_http() -> None:
    from logdist.core.delivery import check_url_for

    assert check_url_for("syslog", "tcp://127.0.0.1:514") == "tcp://127.0.0.1:514"
    with pytest.raises(InvalidRequest, match="tcp://"):
        check_url_for("syslog", "http://h:514/")
    with pytest.raises(InvalidRequest, match="names its port"):
        check_url_for("syslog", "tcp://h")
    with pytest.raises(InvalidRequest, match="http://"):
        check_url_for("loki", "tcp://h:3100")
