"""POSTs to analyzers on kept-alive connections, with llhttp reading the answers.

Forwarding is one request per batch (or per packet, to an analyzer that takes one at a time,
and with thousands of analyzers mostly that), so a general client's per-request objects cost
more than the work; this one keeps a pool of HTTP/1.1 connections per host and port, writes
head and body with one call and no copy of the body, and reads only the status line and
framing of the answer. A kept-alive connection the analyzer closed meanwhile is noticed and
the request sent again on a new one; anything else that goes wrong is a `ForwardError` that
says what, for the dispatcher to retry elsewhere.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

# Seconds a connection may sit idle in the pool before it is closed rather than reused
# (below the analyzers' own keep-alive timeout, so it is seldom they who close first).
IDLE_SECONDS = 10.0
# Idle connections kept per host and port.
MAX_IDLE = 64


class ForwardError(Exception):
    """The request did not get an answer; `str()` says why."""


@dataclass(frozen=True)
class Target:
    key: tuple[str, str, int]
    head: bytes  # request line and headers up to Content-Type, without the length


def target(url: str) -> Target:
    parts = urlsplit(url)
    scheme = parts.scheme
    host = parts.hostname or ""
    port = parts.port or (443 if scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    netloc = parts.netloc.rsplit("@", 1)[-1]
    head = f"POST {path} HTTP/1.1\r\nHost: {netloc}\r\n".encode("latin-1")
    return Target((scheme, host, port), head)


class Conn(asyncio.Protocol):
    """One connection to an analyzer; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.answer: asyncio.Future[int] | None = None
        self.got_bytes = False
        self.reusable = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are alike, not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.reusable = False
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(ForwardError("server disconnected"))

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def send(self, head: bytes, body: list[bytes]) -> asyncio.Future[int]:
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.got_bytes = False
        self.reusable = False
        self.transport.writelines([head, *body])
        return self.answer

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.reusable = False
            if self.answer is not None and not self.answer.done():
                self.answer.set_exception(ForwardError(f"bad HTTP answer: {exc}"))
            self.close()

    def on_message_complete(self) -> None:
        self.reusable = self.parser.should_keep_alive()
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(self.parser.get_status_code())

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Forwarder:
    """Pools of kept-alive connections, one per analyzer host and port."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, int], deque[Conn]] = {}
        self._targets: dict[str, Target] = {}
        self._ssl: ssl.SSLContext | None = None

    async def post(
        self, url: str, body: bytes | list[bytes], content_type: str, timeout: float
    ) -> int:
        """POST `body` (bytes, or pieces sent back to back) to `url`; the answer's status, or
        ForwardError."""
        if isinstance(body, bytes):
            body = [body]
        t = self._targets.get(url)
        if t is None:
            t = self._targets[url] = target(url)
            if len(self._targets) > 100_000:
                self._targets.clear()  # analyzers come and go; keep the cache bounded
        head = t.head + b"Content-Type: %s\r\nContent-Length: %d\r\n\r\n" % (
            content_type.encode("latin-1"),
            sum(map(len, body)),
        )
        conns: list[Conn] = []  # what this request used, to close if it is abandoned
        try:
            async with asyncio.timeout(timeout):
                conn, reused = await self._take(t)
                conns.append(conn)
                try:
                    status = await conn.send(head, body)
                except ForwardError:
                    if not reused or conn.got_bytes:
                        raise
                    # The analyzer closed this kept-alive connection as it was reused: once
                    # more on a new one.
                    conn, _ = await self._take(t, fresh=True)
                    conns.append(conn)
                    status = await conn.send(head, body)
        except TimeoutError:
            for c in conns:
                c.close()  # an answer may still come: the connection cannot be reused
            raise ForwardError("timeout") from None
        except OSError as exc:
            raise ForwardError(f"connect failed: {exc.strerror or exc}") from None
        except BaseException:
            for c in conns:
                c.close()
            raise
        self._give_back(t, conn)
        return status

    async def _take(self, t: Target, fresh: bool = False) -> tuple[Conn, bool]:
        idle = self._idle.get(t.key)
        now = time.monotonic()
        while idle and not fresh:
            conn = idle.pop()
            if conn.open and now - conn.idle_since < IDLE_SECONDS:
                return conn, True
            conn.close()
        scheme, host, port = t.key
        context = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(Conn, host, port, ssl=context)
        return conn, False

    def _give_back(self, t: Target, conn: Conn) -> None:
        if not conn.reusable or not conn.open:
            conn.close()
            return
        idle = self._idle.setdefault(t.key, deque())
        if len(idle) >= MAX_IDLE:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
