"""The outputs that convert: a batch's messages made into an analyzer's own request (see
`formats.encoding`) in a parse process, off the event loop; each format's answer read by
its module beside this one."""

from __future__ import annotations

import time

from logdist.core.delivery import Delivery, outcome
from logdist.distributor.inputs.parsing import ParseProcesses
from logdist.distributor.outputs.base import Sent, Sorted
from logdist.formats.encoding import encode
from logdist.formats.packet import Packet
from logdist.net.pool import ANSWER_HEAD, Answer


class Converting:
    """A format whose answer speaks for the whole request (its HTTP status); the formats
    that answer per record read their answers themselves."""

    keep = ANSWER_HEAD

    def __init__(self, fmt: str, content_type: str) -> None:
        self.format = fmt
        self.content_type = content_type

    async def prepare(
        self, batch: list[Packet], delivery: Delivery, procs: ParseProcesses | None
    ) -> Sent:
        args = (self.format, delivery.settings(), [p.body for p in batch], time.time_ns())
        # With no parse processes, `call` runs it here.
        made = encode(*args) if procs is None else await procs.call(None, encode, *args)
        return Sent([made[0]], made[1], made[2] if len(made) > 2 else None)

    def sort(self, answer: Answer, sent: Sent) -> Sorted:
        return Sorted(outcome(answer.status))
