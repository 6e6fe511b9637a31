"""A batch as NDJSON, one packet a line (a run's lines are its packets)."""

from __future__ import annotations

from logdist.distributor.outputs.base import ByStatus
from logdist.formats.packet import Packet
from logdist.net.web import NDJSON


class NdjsonOutput(ByStatus):
    content_type = NDJSON

    def encode(self, batch: list[Packet]) -> list[bytes]:
        """Pieces to write back to back: no copy of the packets."""
        pieces: list[bytes] = []
        for packet in batch:
            pieces += (packet.body, b"\n")
        return pieces
