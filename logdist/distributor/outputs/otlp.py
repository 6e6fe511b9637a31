"""`otlp`: OTLP/HTTP, `POST …/v1/logs`, an ExportLogsServiceRequest in protobuf. Answered as
the specification says (https://opentelemetry.io/docs/specs/otlp/#otlphttp-response): 200 is
delivered, unless its `partial_success` rejected some records — counted as refused, but the
answer does not say which, so they cannot be dead letters; 429, 502, 503 and 504 are sent
again (after Retry-After); any other status must not be retried, and is a refusal."""

from __future__ import annotations

from google.protobuf.message import DecodeError

from logdist.core.delivery import DELIVERED, FAILED, PARTIAL, REFUSED, Delivery
from logdist.distributor.inputs.parsing import ParseProcesses
from logdist.distributor.outputs.base import Sent, Sorted
from logdist.distributor.outputs.converting import Converting
from logdist.formats.otlp import rejected
from logdist.formats.packet import Packet, opened_envelope
from logdist.net.pool import Answer

PROTOBUF = "application/x-protobuf"
RETRYABLE = frozenset({408, 429, 502, 503, 504})


class OtlpOutput(Converting):
    keep = 64 << 10

    def __init__(self) -> None:
        super().__init__("otlp", PROTOBUF)

    async def prepare(
        self, batch: list[Packet], delivery: Delivery, procs: ParseProcesses | None
    ) -> Sent:
        if batch[0].otlp:
            # Requests kept as they came: their protobuf back to back is one valid request
            # (repeated fields concatenate). Bytes moved, nothing decoded.
            pieces = [opened_envelope(p.body)[0] for p in batch]
            return Sent(pieces, sum([p.messages for p in batch]))
        return await super().prepare(batch, delivery, procs)

    def sort(self, answer: Answer, sent: Sent) -> Sorted:
        status = answer.status
        if 200 <= status < 300:
            try:
                count, message = rejected(answer.body)
            except DecodeError:
                return Sorted(DELIVERED)
            if count <= 0:
                return Sorted(DELIVERED)
            return Sorted(PARTIAL, unnamed=min(count, sent.records), reason=message)
        return Sorted(FAILED if status in RETRYABLE or status < 400 else REFUSED)
