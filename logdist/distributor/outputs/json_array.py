"""A batch as one JSON array of packets."""

from __future__ import annotations

from logdist.distributor.outputs.base import ByStatus
from logdist.formats.packet import Packet
from logdist.net.web import JSON


class JsonArrayOutput(ByStatus):
    content_type = JSON

    def encode(self, batch: list[Packet]) -> list[bytes]:
        # A run's lines are its packets, one a line.
        return [
            b"[%s]"
            % b",".join([p.body if p.count == 1 else p.body.replace(b"\n", b",") for p in batch])
        ]
