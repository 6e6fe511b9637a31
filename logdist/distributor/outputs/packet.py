"""One packet a request, as the seed's analyzers take it: the packet's own JSON object."""

from __future__ import annotations

from logdist.distributor.outputs.base import ByStatus
from logdist.formats.packet import Packet
from logdist.net.web import JSON


class PacketOutput(ByStatus):
    content_type = JSON

    def encode(self, batch: list[Packet]) -> list[bytes]:
        return [batch[0].body]
