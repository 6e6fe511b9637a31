"""Frames over TCP (`tcp://host:port`) or TLS (`tls://host:port`, RFC 5425): what the syslog
output writes, on kept connections, one batch at a time on each.

TCP syslog has no acknowledgement (RFC 6587): a batch counts as sent once the kernel took
it. A kept connection the receiver has closed is noticed before it is written to, and a
new one is opened; but a receiver that dies after taking bytes into its socket buffer and
before reading them loses them, and a batch being written when the connection drops is sent
again whole (its first frames may arrive twice).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from urllib.parse import urlsplit

from logdist.net.pool import Answer, ForwardError

# Idle connections kept per host:port.
MAX_IDLE = 8

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Key = tuple[str, int, bool]


def address(url: str) -> Key:
    """Host, port, and whether over TLS."""
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or 0, parts.scheme == "tls"


def usable(conn: Conn) -> bool:
    reader, writer = conn
    return not writer.is_closing() and not reader.at_eof()


class StreamSender:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self._idle: dict[Key, deque[Conn]] = {}
        self._tls = tls  # what tls:// receivers are verified with; None: the system's store

    async def _take(self, key: Key) -> Conn:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if usable(conn):
                return conn
            conn[1].close()
        return await self._connect(key)

    async def _connect(self, key: Key) -> Conn:
        host, port, tls = key
        if not tls:
            return await asyncio.open_connection(host, port)
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return await asyncio.open_connection(host, port, ssl=self._tls, server_hostname=host)

    async def send(self, url: str, pieces: list[bytes], timeout: float) -> Answer:
        """Write `pieces` to `url`'s host and port; a 200 once the kernel took them, or
        ForwardError."""
        key = address(url)
        conn: Conn | None = None
        try:
            async with asyncio.timeout(timeout):
                conn = await self._take(key)
                conn[1].writelines(pieces)
                await conn[1].drain()
        except TimeoutError:
            if conn is not None:
                conn[1].close()
            raise ForwardError("timeout") from None
        except OSError as exc:
            if conn is not None:
                conn[1].close()
            raise ForwardError(f"connection failed: {exc.strerror or exc}") from None
        idle = self._idle.setdefault(key, deque())
        if len(idle) < MAX_IDLE:
            idle.append(conn)
        else:
            conn[1].close()
        return Answer(200)

    async def probe(self, url: str, timeout: float) -> None:
        """Connect and close: the health check of a receiver that answers nothing."""
        try:
            async with asyncio.timeout(timeout):
                _, writer = await self._connect(address(url))
        except TimeoutError:
            raise ForwardError("timeout") from None
        except OSError as exc:
            raise ForwardError(f"connect failed: {exc.strerror or exc}") from None
        writer.close()

    def close(self) -> None:
        for idle in self._idle.values():
            for _, writer in idle:
                writer.close()
        self._idle.clear()
