"""`elasticsearch` (and OpenSearch): `POST …/_bulk`, a `create` action with a stable `_id`
and the document for every message. The answer is read item by item
(https://www.elastic.co/guide/en/elasticsearch/reference/current/docs-bulk.html#bulk-api-response-body):
a 2xx item, or a 409 on our own `_id` (stored by an earlier try), is delivered; a 429, 408
or 5xx item is sent again, alone; any other item is refused with its error."""

from __future__ import annotations

import orjson

from logdist.core.delivery import DELIVERED, PARTIAL, outcome
from logdist.distributor.outputs.base import Sent, Sorted
from logdist.distributor.outputs.converting import Converting
from logdist.net.pool import ANSWER_MAX, Answer
from logdist.net.web import NDJSON


def item_reason(result: dict[str, object]) -> str:
    error = result.get("error")
    if isinstance(error, dict):
        return f"{error.get('type', 'error')}: {error.get('reason', '')}"
    return str(error or f"status {result.get('status')}")


class ElasticsearchOutput(Converting):
    keep = ANSWER_MAX

    def __init__(self) -> None:
        super().__init__("elasticsearch", NDJSON)

    def sort(self, answer: Answer, sent: Sent) -> Sorted:
        if answer.status != 200:
            return Sorted(outcome(answer.status))
        if b'"errors":false' in answer.body[:64]:
            return Sorted(DELIVERED)  # said before the items: nothing to read item by item
        try:
            data = orjson.loads(answer.body)
            items = data["items"] if data.get("errors") else None
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            # Stored or not, nobody can say: all again (a stored one comes back as a 409).
            return Sorted(PARTIAL, retry=list(range(sent.records)), reason="unreadable answer")
        if items is None:
            return Sorted(DELIVERED)
        if not isinstance(items, list) or len(items) != sent.records:
            return Sorted(PARTIAL, retry=list(range(sent.records)), reason="items do not match")
        out = Sorted(PARTIAL)
        for i, item in enumerate(items):
            result: object = next(iter(item.values()), {}) if isinstance(item, dict) else {}
            if not isinstance(result, dict):
                result = {}
            status = result.get("status", 0)
            status = status if type(status) is int else 0
            if 200 <= status < 300 or status == 409:
                continue
            if status == 429 or status == 408 or status >= 500:
                out.retry.append(i)
                out.hold = out.hold or status == 429
            else:
                out.refused.append((i, status, item_reason(result)))
        return out
