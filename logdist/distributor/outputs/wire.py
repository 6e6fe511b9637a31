"""Sending a batch to an analyzer: its output's body, gzipped when its settings say so, posted
over a kept-alive connection with the framing headers; the answer as it came."""

from __future__ import annotations

import asyncio
import functools
import zlib

from logdist.core.registry import Analyzer
from logdist.distributor.outputs.base import Output
from logdist.distributor.outputs.json_array import JsonArrayOutput
from logdist.distributor.outputs.ndjson import NdjsonOutput
from logdist.distributor.outputs.packet import PacketOutput
from logdist.formats.packet import Packet
from logdist.net.pool import Answer, Forwarder, Target, framing, target

# Bodies bigger than this are gzipped in a thread (zlib lets go of the GIL), smaller ones at once.
GZIP_INLINE = 64 << 10

PACKET, NDJSON_BATCH, JSON_ARRAY = PacketOutput(), NdjsonOutput(), JsonArrayOutput()


def output_for(analyzer: Analyzer) -> Output:
    """One packet a request to an analyzer that takes them so, else its batch format."""
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


class Wire:
    def __init__(self) -> None:
        self._forwarder = Forwarder()
        # Where forwards go, by analyzer: made from its delivery settings, remade when they change.
        self._targets: dict[str, tuple[object, Target]] = {}

    def _target(self, analyzer: Analyzer) -> Target:
        known = self._targets.get(analyzer.id)
        if known is None or known[0] is not analyzer.delivery:
            known = (analyzer.delivery, target(analyzer.url, analyzer.delivery.headers))
            self._targets[analyzer.id] = known
        return known[1]

    async def body(self, analyzer: Analyzer, batch: list[Packet]) -> tuple[list[bytes], bytes]:
        """What a forward of `batch` to `analyzer` sends: body pieces and framing headers."""
        output = output_for(analyzer)
        pieces = output.encode(batch)
        gzip = analyzer.delivery.compression == "gzip"
        if gzip:
            if sum(map(len, pieces)) > GZIP_INLINE:
                pieces = [await asyncio.to_thread(gzip_pieces, pieces)]
            else:
                pieces = [gzip_pieces(pieces)]
        return pieces, fields_for(output.content_type, gzip)

    async def send(self, analyzer: Analyzer, batch: list[Packet], timeout: float) -> Answer:
        """Post `batch` once; ForwardError when no answer came."""
        body, fields = await self.body(analyzer, batch)
        return await self._forwarder.post(self._target(analyzer), body, fields, timeout)

    def verdict(self, analyzer: Analyzer, answer: Answer) -> str:
        return output_for(analyzer).verdict(answer.status)

    def forget(self, aid: str) -> None:
        self._targets.pop(aid, None)

    def close(self) -> None:
        self._forwarder.close()
