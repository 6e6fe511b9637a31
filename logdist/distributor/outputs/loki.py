"""`loki`: `POST …/loki/api/v1/push`, JSON, one stream per label set. Loki stores what it
can of a push and answers 400 naming each entry it ignored, by timestamp and stream, with
the count ("entry with timestamp … ignored, reason: '…'" lines and "total ignored: N out of
M": pkg/ingester/stream.go); those entries are refused, the rest delivered. A 400 that names
no entries refused the whole push; 429 is a rate limit (sent again, after Retry-After)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from logdist.core.delivery import PARTIAL, REFUSED, outcome
from logdist.distributor.outputs.base import Sent, Sorted
from logdist.distributor.outputs.converting import Converting
from logdist.net.pool import ANSWER_MAX, Answer
from logdist.net.web import JSON

# Go's time.Time.String(): 2026-12-06 19:30:15.123 +0000 UTC
_ENTRY = re.compile(
    r"entry with timestamp (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(\.\d+)? ([+-]\d\d)(\d\d)[^,]*"
    r" ignored, reason: '(.*?)'(?: for stream: (\{.*?\}))?,\n"
)
_TOTAL = re.compile(r"total ignored: (\d+) out of \d+(?: for stream: (\{.*?\}))?")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def go_time_ns(stamp: str, fraction: str | None, hours: str, minutes: str) -> int:
    sign = -1 if hours.startswith("-") else 1
    zone = timezone(sign * timedelta(hours=abs(int(hours)), minutes=int(minutes)))
    moment = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=zone)
    delta = moment - _EPOCH
    nanos = int((fraction or ".0")[1:].ljust(9, "0")[:9])
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + nanos


def ignored(text: str) -> tuple[list[tuple[str | None, int, str]], int] | None:
    """The entries a 400 names — (stream or None, timestamp ns, reason) — and the total it
    says were ignored; None when it is not Loki's partial answer."""
    totals = list(_TOTAL.finditer(text))
    if not totals:
        return None
    entries: list[tuple[str | None, int, str]] = []
    start = 0
    for total in totals:
        # Newer Lokis name the stream once, after its entries.
        for m in _ENTRY.finditer(text, start, total.start()):
            stamp, fraction, hours, minutes, reason, stream = m.groups()
            ns = go_time_ns(stamp, fraction, hours, minutes)
            entries.append((stream or total.group(2), ns, reason))
        start = total.end()
    return entries, sum(int(t.group(1)) for t in totals)


class LokiOutput(Converting):
    keep = ANSWER_MAX

    def __init__(self) -> None:
        super().__init__("loki", JSON)

    def sort(self, answer: Answer, sent: Sent) -> Sorted:
        if answer.status != 400:
            return Sorted(outcome(answer.status))
        read = ignored(answer.body.decode("utf-8", "replace"))
        if read is None:
            return Sorted(REFUSED)
        entries, total = read
        keys: list[tuple[str, int]] = sent.keys or []
        out = Sorted(PARTIAL)
        taken: set[int] = set()
        for stream, ns, reason in entries:
            for i, (name, when) in enumerate(keys):
                if when == ns and i not in taken and (stream is None or stream == name):
                    taken.add(i)
                    out.refused.append((i, 400, reason))
                    break
        out.unnamed = max(0, total - len(out.refused))
        out.reason = answer.body.decode("utf-8", "replace")[-200:]
        return out
