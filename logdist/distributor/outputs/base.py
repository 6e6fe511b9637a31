"""What a way of delivering to an analyzer is: a maker of a batch's request body, and a
reader of the analyzer's answer into verdicts (delivered, retry, refused), for the whole
batch or record by record. The dispatcher knows only this; each way is a module beside this
one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from logdist.core.delivery import Delivery, outcome
from logdist.distributor.inputs.parsing import ParseProcesses
from logdist.formats.packet import Packet
from logdist.net.pool import ANSWER_HEAD, Answer


@dataclass(slots=True)
class Sent:
    """A request as it was made: its body, the records (messages) in it, and what its answer
    is read by (Loki: each record's stream and timestamp)."""

    pieces: list[bytes]
    records: int
    keys: Any = None


@dataclass(slots=True)
class Sorted:
    """An answer read. `kind` is core.delivery's DELIVERED, FAILED or REFUSED for the whole
    batch, or PARTIAL: then the records (by their place in the request) listed in `retry`
    are sent again, those in `refused` (record, status, reason) are refused, and the rest
    were delivered. `unnamed` records were refused by an answer that says how many but not
    which (OTLP's partial success): they are counted, and cannot be dead letters."""

    kind: str
    retry: list[int] = field(default_factory=list)
    refused: list[tuple[int, int, str]] = field(default_factory=list)
    unnamed: int = 0
    reason: str = ""
    # An item asked the analyzer to be left alone a while (a 429 inside the answer).
    hold: bool = False


class Output(Protocol):
    # Content-Type of the bodies it makes.
    content_type: str
    # Bytes of the answer's body its reader needs.
    keep: int

    async def prepare(
        self, batch: list[Packet], delivery: Delivery, procs: ParseProcesses | None
    ) -> Sent:
        """The request for `batch`."""
        ...

    def sort(self, answer: Answer, sent: Sent) -> Sorted:
        """What `answer` says of the records of `sent`."""
        ...


class ByStatus:
    """logdist's own packet outputs: the packets' own bytes, framed by `encode` (made here, at
    once: nothing is converted); the answer's HTTP status says the verdict for the whole
    batch."""

    keep = ANSWER_HEAD
    encode: Callable[[list[Packet]], list[bytes]]

    async def prepare(
        self, batch: list[Packet], delivery: Delivery, procs: ParseProcesses | None
    ) -> Sent:
        return Sent(self.encode(batch), sum([p.messages for p in batch]))

    @staticmethod
    def sort(answer: Answer, sent: Sent) -> Sorted:
        return Sorted(outcome(answer.status))
