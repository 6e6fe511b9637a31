"""Each protocol's answer is read record by record as its documentation says: delivered,
sent again, refused — never the whole batch again when part of it was stored."""

from __future__ import annotations

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from logdist.core.delivery import DELIVERED, FAILED, PARTIAL, REFUSED
from logdist.distributor.outputs.base import Sent
from logdist.distributor.outputs.elasticsearch import ElasticsearchOutput
from logdist.distributor.outputs.loki import LokiOutput, go_time_ns
from logdist.distributor.outputs.otlp import OtlpOutput
from logdist.distributor.outputs.records import RecordsOutput
from logdist.distributor.outputs.splunk import SplunkHecOutput
from logdist.net.pool import Answer


def item(status: int, error: str | None = None) -> dict[str, object]:
    result: dict[str, object] = {"_index": "logs", "_id": "x", "status": status}
    if error:
        result["error"] = {"type": error, "reason": f"{error} happened"}
    return {"create": result}


def test_a_bulk_answer_is_read_item_by_item() -> None:
    # https://www.elastic.co/guide/en/elasticsearch/reference/current/docs-bulk.html
    body = orjson.dumps(
        {
            "took": 3,
            "errors": True,
            "items": [
                item(201),
                item(409, "version_conflict_engine_exception"),  # ours, stored before
                item(429, "es_rejected_execution_exception"),
                item(400, "mapper_parsing_exception"),
                item(503, "unavailable_shards_exception"),
            ],
        }
    )
    verdict = ElasticsearchOutput().sort(Answer(200, None, body), Sent([], 5))
    assert verdict.kind == PARTIAL
    assert verdict.retry == [2, 4] and verdict.hold
    assert verdict.refused == [
        (3, 400, "mapper_parsing_exception: mapper_parsing_exception happened")
    ]


def test_a_bulk_answer_without_errors_is_all_delivered() -> None:
    body = orjson.dumps({"errors": False, "items": [item(201), item(201)]})
    assert ElasticsearchOutput().sort(Answer(200, None, body), Sent([], 2)).kind == DELIVERED


def test_an_unreadable_bulk_answer_sends_all_again_without_blaming_the_analyzer() -> None:
    verdict = ElasticsearchOutput().sort(Answer(200, None, b'{"errors": tr'), Sent([], 3))
    assert (verdict.kind, verdict.retry) == (PARTIAL, [0, 1, 2])
    assert ElasticsearchOutput().sort(Answer(429), Sent([], 3)).kind == FAILED
    assert ElasticsearchOutput().sort(Answer(413), Sent([], 3)).kind == REFUSED


def go_time(ns: int) -> str:
    """Go's time.Time.String() of a UTC time, as Loki writes it."""
    from datetime import UTC, datetime

    seconds, rest = divmod(ns, 1_000_000_000)
    fraction = f".{rest:09d}".rstrip("0") if rest else ""
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%d %H:%M:%S}{fraction} +0000 UTC"


def test_loki_names_the_entries_it_ignored_and_stored_the_rest() -> None:
    # pkg/ingester/stream.go: one line per ignored entry, then the total for the stream.
    keys = [('{service="api"}', 1_000_000_000_500_000_000 + i) for i in range(4)]
    old = keys[1][1]
    body = (
        f"entry with timestamp {go_time(old)} ignored, reason: 'entry too far behind, entry"
        " timestamp is: 2001-09-09T01:46:40Z, oldest acceptable timestamp is:"
        " 2001-09-09T02:46:40Z',\nuser 'fake', total ignored: 1 out of 4 for stream:"
        ' {service="api"}'
    ).encode()
    verdict = LokiOutput().sort(Answer(400, None, body), Sent([], 4, keys))
    assert verdict.kind == PARTIAL and verdict.unnamed == 0 and verdict.retry == []
    assert [(i, status) for i, status, _ in verdict.refused] == [(1, 400)]
    assert "entry too far behind" in verdict.refused[0][2]
    assert go_time_ns("2001-09-09 01:46:40", ".5", "+00", "00") == 1_000_000_000_500_000_000


def test_loki_ignored_entries_past_its_list_are_counted_as_refused() -> None:
    keys = [('{service="api"}', 10 + i) for i in range(5)]
    body = b"user 'fake', total ignored: 2 out of 5 for stream: {service=\"api\"}"
    verdict = LokiOutput().sort(Answer(400, None, body), Sent([], 5, keys))
    assert (verdict.kind, verdict.refused, verdict.unnamed) == (PARTIAL, [], 2)


def test_loki_refusing_the_push_itself_or_rate_limiting() -> None:
    body = b"error at least one label pair is required per stream"
    assert LokiOutput().sort(Answer(400, None, body), Sent([], 2, [])).kind == REFUSED
    assert LokiOutput().sort(Answer(429), Sent([], 2, [])).kind == FAILED
    assert LokiOutput().sort(Answer(204), Sent([], 2, [])).kind == DELIVERED


def test_hec_stops_at_the_invalid_event() -> None:
    # Troubleshoot HTTP Event Collector: code 6 "Invalid data format" with the event number.
    body = b'{"text":"Invalid data format","code":6,"invalid-event-number":2}'
    verdict = SplunkHecOutput().sort(Answer(400, None, body), Sent([], 5))
    assert verdict.kind == PARTIAL
    assert verdict.refused == [(2, 400, "HEC code 6: Invalid data format")]
    assert verdict.retry == [3, 4]  # 0 and 1 were indexed
    busy = b'{"text":"Server is busy","code":9}'
    assert SplunkHecOutput().sort(Answer(503, None, busy), Sent([], 5)).kind == FAILED
    bad_token = b'{"text":"Invalid token","code":4}'
    assert SplunkHecOutput().sort(Answer(403, None, bad_token), Sent([], 5)).kind == REFUSED


def test_otlp_partial_success_counts_rejected_records() -> None:
    answer = ExportLogsServiceResponse()
    answer.partial_success.rejected_log_records = 2
    answer.partial_success.error_message = "2 records too large"
    verdict = OtlpOutput().sort(Answer(200, None, answer.SerializeToString()), Sent([], 10))
    assert (verdict.kind, verdict.unnamed, verdict.reason) == (PARTIAL, 2, "2 records too large")
    assert OtlpOutput().sort(Answer(200, None, b""), Sent([], 10)).kind == DELIVERED
    # The OTLP spec: 429, 502, 503, 504 are retryable; every other error is not.
    assert [OtlpOutput().sort(Answer(s), Sent([], 1)).kind for s in (429, 503, 400, 500)] == [
        FAILED,
        FAILED,
        REFUSED,
        REFUSED,
    ]


def test_a_clickhouse_data_error_is_a_refusal_not_a_failure() -> None:
    old = b"Code: 72, e.displayText() = DB::Exception: Unsigned type must not contain '-'"
    assert RecordsOutput().sort(Answer(500, None, old), Sent([], 3)).kind == REFUSED
    assert RecordsOutput().sort(Answer(400, None, old), Sent([], 3)).kind == REFUSED
    busy = b"Code: 202, e.displayText() = DB::Exception: Too many simultaneous queries"
    assert RecordsOutput().sort(Answer(500, None, busy), Sent([], 3)).kind == FAILED
