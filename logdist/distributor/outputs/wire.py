"""Sending a batch to an analyzer: its output's body, gzipped when its settings say so, posted
over a kept-alive connection with the framing headers (or, for syslog, written to a kept TCP
connection); the answer as it came, with what was sent to read it by."""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import zlib

from logdist.core.delivery import UNBOUNDED_LABELS, Delivery
from logdist.core.registry import Analyzer
from logdist.distributor.inputs.parsing import ParseProcesses
from logdist.distributor.outputs.base import Output, Sent, Sorted
from logdist.distributor.outputs.converting import Converting
from logdist.distributor.outputs.elasticsearch import ElasticsearchOutput
from logdist.distributor.outputs.json_array import JsonArrayOutput
from logdist.distributor.outputs.loki import LokiOutput
from logdist.distributor.outputs.ndjson import NdjsonOutput
from logdist.distributor.outputs.otlp import OtlpOutput
from logdist.distributor.outputs.packet import PacketOutput
from logdist.distributor.outputs.records import RecordsOutput
from logdist.distributor.outputs.splunk import SplunkHecOutput
from logdist.distributor.outputs.syslog import SyslogOutput
from logdist.events import event
from logdist.formats.otlp import unwrap_all
from logdist.formats.packet import Packet
from logdist.net.pool import Answer, Forwarder, Target, framing, target
from logdist.net.stream import StreamSender

log = logging.getLogger("logdist.distributor")

# Bodies bigger than this are gzipped in a thread (zlib lets go of the GIL), smaller ones at once.
GZIP_INLINE = 64 << 10

PACKET, NDJSON_BATCH, JSON_ARRAY = PacketOutput(), NdjsonOutput(), JsonArrayOutput()
CONVERTING: dict[str, Converting] = {
    o.format: o
    for o in (
        RecordsOutput(),
        ElasticsearchOutput(),
        LokiOutput(),
        SplunkHecOutput(),
        OtlpOutput(),
        SyslogOutput(),
    )
}


def output_for(analyzer: Analyzer) -> Output:
    """The analyzer's own protocol; else one packet a request to an analyzer that takes
    them so, else its batch format."""
    converting = CONVERTING.get(analyzer.delivery.format)
    if converting is not None:
        return converting
    if not analyzer.batches:
        return PACKET
    return JSON_ARRAY if analyzer.delivery.format == "json-array" else NDJSON_BATCH


def gzip_pieces(pieces: list[bytes]) -> bytes:
    # Level 1, as nginx's gzip_comp_level defaults to: most of the saving for a fraction of
    # the CPU of the higher levels.
    z = zlib.compressobj(1, zlib.DEFLATED, 31)
    return b"".join([z.compress(p) for p in pieces] + [z.flush()])


@functools.cache
def fields_for(content_type: str, gzip: bool) -> bytes:
    return framing(content_type, "gzip" if gzip else None)


def unbounded_labels(delivery: Delivery) -> list[str]:
    """Loki label fields that look unbounded (a stream per value)."""
    if delivery.format != "loki":
        return []
    return [name for name in delivery.option("labels") if name in UNBOUNDED_LABELS]


class Wire:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self._forwarder = Forwarder(tls)
        self._streams = StreamSender(tls)
        # Where conversions run (the distributor's parse processes); None: here.
        self.procs: ParseProcesses | None = None
        # Where forwards go, by analyzer: made from its delivery settings, remade when they change.
        self._targets: dict[str, tuple[object, Target]] = {}

    def _target(self, analyzer: Analyzer) -> Target:
        known = self._targets.get(analyzer.id)
        if known is None or known[0] is not analyzer.delivery:
            known = (analyzer.delivery, target(analyzer.url, analyzer.delivery.headers))
            self._targets[analyzer.id] = known
            unbounded = unbounded_labels(analyzer.delivery)
            if unbounded:
                event(
                    log,
                    "loki_labels_unbounded",
                    logging.WARNING,
                    analyzer=analyzer.id,
                    labels=",".join(unbounded),
                    hint="each value makes a stream of its own; keep labels to a few values",
                )
        return known[1]

    async def body(self, analyzer: Analyzer, batch: list[Packet]) -> tuple[Sent, bytes]:
        """What a forward of `batch` to `analyzer` sends: the request made (its body pieces
        gzipped when asked) and the framing headers."""
        output = output_for(analyzer)
        sent = await output.prepare(batch, analyzer.delivery, self.procs)
        gzip = analyzer.delivery.compression == "gzip"
        if gzip:
            if sum(map(len, sent.pieces)) > GZIP_INLINE:
                sent.pieces = [await asyncio.to_thread(gzip_pieces, sent.pieces)]
            else:
                sent.pieces = [gzip_pieces(sent.pieces)]
        return sent, fields_for(output.content_type, gzip)

    async def send(
        self, analyzer: Analyzer, batch: list[Packet], timeout: float
    ) -> tuple[Answer, Sent]:
        """Send `batch` once; ForwardError when no answer came."""
        sent, fields = await self.body(analyzer, batch)
        if analyzer.delivery.format == "syslog":
            return await self._streams.send(analyzer.url, sent.pieces, timeout), sent
        target_ = self._target(analyzer)
        keep = output_for(analyzer).keep
        return await self._forwarder.post(target_, sent.pieces, fields, timeout, keep), sent

    def takes_otlp(self, analyzer: Analyzer) -> bool:
        """Whether OTLP requests kept as they came go to it as they are: an `otlp` analyzer
        (concatenated), or a logdist analyzer that said it takes them (in its batches)."""
        fmt = analyzer.delivery.format
        return fmt == "otlp" or (fmt == "auto" and analyzer.otlp)

    async def unwrap(self, batch: list[Packet]) -> list[Packet]:
        """OTLP requests kept as they came, made ordinary packets (their records messages) in
        a parse process: for an analyzer that does not take OTLP."""
        bodies = [p.body for p in batch]
        procs = self.procs
        made = unwrap_all(bodies) if procs is None else await procs.call(None, unwrap_all, bodies)
        return [
            Packet(p.id, p.emitter, p.messages, body, p.attempts, p.last_failed, p.segment,
                   refusals=p.refusals)
            for p, body in zip(batch, made, strict=True)
        ]  # fmt: skip

    def converts(self, analyzer: Analyzer) -> bool:
        """Whether it takes records (a request can be narrowed down to one message)."""
        return analyzer.delivery.format in CONVERTING

    def sort(self, analyzer: Analyzer, answer: Answer, sent: Sent) -> Sorted:
        return output_for(analyzer).sort(answer, sent)

    def forget(self, aid: str) -> None:
        self._targets.pop(aid, None)

    def close(self) -> None:
        self._forwarder.close()
        self._streams.close()
