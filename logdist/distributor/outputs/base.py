"""What a way of delivering to an analyzer is: an encoder of a batch into a request body, and a
reader of the analyzer's answer into a verdict (delivered, retry, refused). The dispatcher
knows only this; each way is one module beside this one."""

from __future__ import annotations

from typing import Protocol

from logdist.core.delivery import outcome
from logdist.formats.packet import Packet


class Output(Protocol):
    # Content-Type of the bodies it makes.
    content_type: str

    def encode(self, batch: list[Packet]) -> list[bytes]:
        """The body for `batch`, as pieces written back to back."""
        ...

    def verdict(self, status: int) -> str:
        """`core.delivery`'s DELIVERED, FAILED or REFUSED for the whole batch."""
        ...


class ByStatus:
    """The verdict every output has today: the answer's HTTP status says it for the batch."""

    @staticmethod
    def verdict(status: int) -> str:
        return outcome(status)
