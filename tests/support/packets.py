"""Packets as the tests build them: the seed's shape, `{"packetId", "emitter", "messages"}`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson


def packet(
    pid: str, messages: Iterable[dict[str, Any]] | int = 1, emitter: str = "e1"
) -> dict[str, Any]:
    """A packet's body; `messages` a count gives messages `{"message": "0"}`, `"1"`, ..."""
    if isinstance(messages, int):
        messages = ({"message": str(i)} for i in range(messages))
    return {"packetId": pid, "emitter": emitter, "messages": list(messages)}


def ndjson(packets: Iterable[dict[str, Any]]) -> bytes:
    """Packets as one bulk body, one a line."""
    return b"\n".join(orjson.dumps(p) for p in packets)
