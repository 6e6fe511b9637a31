"""`splunk-hec`: `POST …/services/collector/event`, HEC event objects back to back. HEC reads
a batch in order and stops at the first event it cannot take, answering 400 with its
`invalid-event-number` (https://help.splunk.com/splunk-enterprise/get-data-in/collect-http-event-data/troubleshoot-http-event-collector):
the events before it are delivered, it is refused, the ones after it are sent again. Code 9
(503, server busy) sends the batch again after Retry-After."""

from __future__ import annotations

import orjson

from logdist.core.delivery import PARTIAL, outcome
from logdist.distributor.outputs.base import Sent, Sorted
from logdist.distributor.outputs.converting import Converting
from logdist.net.pool import Answer
from logdist.net.web import JSON


class SplunkHecOutput(Converting):
    def __init__(self) -> None:
        super().__init__("splunk-hec", JSON)

    def sort(self, answer: Answer, sent: Sent) -> Sorted:
        if answer.status == 400:
            try:
                data = orjson.loads(answer.body)
                bad = data["invalid-event-number"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                bad = None
            if type(bad) is int and 0 <= bad < sent.records and sent.records > 1:
                reason = f"HEC code {data.get('code')}: {data.get('text', '')}"
                return Sorted(
                    PARTIAL,
                    retry=list(range(bad + 1, sent.records)),
                    refused=[(bad, 400, reason)],
                )
        return Sorted(outcome(answer.status))
