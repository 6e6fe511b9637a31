"""`syslog`: RFC 5424 frames, octet-counted (RFC 6587), over `tcp://host:port` (see
`net.stream` for what a dropped connection can lose or repeat: there is no answer)."""

from __future__ import annotations

from logdist.distributor.outputs.converting import Converting


class SyslogOutput(Converting):
    def __init__(self) -> None:
        super().__init__("syslog", "")
