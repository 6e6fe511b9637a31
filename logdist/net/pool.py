"""POSTs on kept-alive connections, with llhttp reading the answers: the distributor's
forwarding to analyzers, and an emitter fleet's packets to the distributor.

Forwarding is one request per batch (or per packet, to an analyzer that takes one at a time,
and with thousands of analyzers mostly that), so a general client's per-request objects cost
more than the work; this one keeps a pool of HTTP/1.1 connections per host and port, writes
head and body with one call and no copy of the body, and reads only the status line and
framing of the answer (and of it only its Retry-After and first bytes, which say why an
analyzer refused or deferred a batch). A kept-alive connection the analyzer closed meanwhile
is noticed and the request sent again on a new one; anything else that goes wrong is a
`ForwardError` that says what, for the dispatcher to retry elsewhere.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

from logdist.core.backoff import parse_retry_after

# Seconds a connection may sit idle in the pool before it is closed rather than reused
# (below the analyzers' own keep-alive timeout, so it is seldom they who close first).
IDLE_SECONDS = 10.0
# Idle connections kept per host and port, and requests in flight to one at a time: with
# thousands of analyzers behind a few host:ports (paths or queries apart), requests past it
# wait for a connection of the pool instead of each opening and closing its own.
MAX_IDLE = 64
MAX_PER_HOST = MAX_IDLE
# Bytes of an answer's body kept (to say why an analyzer refused a packet).
ANSWER_HEAD = 256
# Bytes kept of an answer read record by record (an Elasticsearch `_bulk` answer names every
# document); past this the answer counts as unreadable.
ANSWER_MAX = 32 << 20


class ForwardError(Exception):
    """The request did not get an answer; `str()` says why."""


@dataclass(frozen=True)
class Target:
    key: tuple[str, str, int]
    head: bytes  # request line, Host and the analyzer's own headers; no framing


def target(url: str, headers: tuple[tuple[str, str], ...] = (), method: str = "POST") -> Target:
    parts = urlsplit(url)
    scheme = parts.scheme
    host = parts.hostname or ""
    port = parts.port or (443 if scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    netloc = parts.netloc.rsplit("@", 1)[-1]
    lines = [f"{method} {path} HTTP/1.1\r\nHost: {netloc}\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in headers]
    return Target((scheme, host, port), "".join(lines).encode("latin-1"))


def framing(content_type: str, encoding: str | None = None) -> bytes:
    """The header lines that say what a body is (all but its length)."""
    fields = f"Content-Type: {content_type}\r\n"
    if encoding:
        fields += f"Content-Encoding: {encoding}\r\n"
    return fields.encode("latin-1")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    # Seconds its Retry-After asked for (None: it sent none, or one that could not be read).
    retry_after: float | None = None
    # The first bytes of its body (ANSWER_HEAD, or what the request asked to keep).
    body: bytes = b""

    def text(self) -> str:
        """The start of its body as text: what a refusal is kept with."""
        return self.body[:1024].decode("utf-8", "replace")


class Conn(asyncio.Protocol):
    """One connection to an analyzer; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.answer: asyncio.Future[Answer] | None = None
        self.got_bytes = False
        self.reusable = False
        self.idle_since = 0.0
        self.retry_after: bytes | None = None
        self.body = b""
        self.keep = ANSWER_HEAD
        self.chunks: list[bytes] = []

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

    def send(
        self, head: bytes, body: list[bytes], keep: int = ANSWER_HEAD
    ) -> asyncio.Future[Answer]:
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.got_bytes = False
        self.reusable = False
        self.retry_after = None
        self.body = b""
        self.keep = keep
        self.chunks = []
        self.transport.writelines([head, *body])
        return self.answer

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 11 and name.lower() == b"retry-after":
            self.retry_after = value

    def on_body(self, body: bytes) -> None:
        if self.keep > ANSWER_HEAD:
            self.chunks.append(body)
        elif len(self.body) < ANSWER_HEAD:
            self.body = (self.body + body)[:ANSWER_HEAD]

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
        if self.chunks:
            self.body = b"".join(self.chunks)[: self.keep]
            self.chunks = []
        if self.answer is not None and not self.answer.done():
            status = self.parser.get_status_code()
            if 200 <= status < 300:
                self.answer.set_result(Answer(status, None, self.body))
            else:
                wait = parse_retry_after(self.retry_after)
                self.answer.set_result(Answer(status, wait, self.body))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Forwarder:
    """Pools of kept-alive connections, one per analyzer host and port."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self._idle: dict[tuple[str, str, int], deque[Conn]] = {}
        self._gates: dict[tuple[str, str, int], asyncio.Semaphore] = {}
        # What https:// connections verify with (net.tls.client_context); None: the system's.
        self._ssl = tls

    async def post(
        self,
        t: Target,
        body: bytes | list[bytes],
        fields: bytes,
        timeout: float,
        keep: int = ANSWER_HEAD,
    ) -> Answer:
        """POST `body` (bytes, or pieces sent back to back) to `t` with header lines `fields`
        (see `framing`); its answer (with the first `keep` bytes of its body), or
        ForwardError."""
        if isinstance(body, bytes):
            body = [body]
        head = b"%s%sContent-Length: %d\r\n\r\n" % (t.head, fields, sum(map(len, body)))
        return await self._exchange(t, head, body, timeout, keep)

    async def get(self, t: Target, timeout: float) -> Answer:
        """GET `t` (made with method="GET"); its answer (with its first bytes), or
        ForwardError. A health probe costs a fraction of a general client's request."""
        return await self._exchange(t, t.head + b"\r\n", [], timeout)

    async def _exchange(
        self, t: Target, head: bytes, body: list[bytes], timeout: float, keep: int = ANSWER_HEAD
    ) -> Answer:
        conns: list[Conn] = []  # what this request used, to close if it is abandoned
        gate = self._gates.get(t.key)
        if gate is None:
            gate = self._gates[t.key] = asyncio.Semaphore(MAX_PER_HOST)
        try:
            async with asyncio.timeout(timeout), gate:
                conn, reused = await self._take(t)
                conns.append(conn)
                try:
                    answer = await conn.send(head, body, keep)
                except ForwardError:
                    if not reused or conn.got_bytes:
                        raise
                    # The analyzer closed this kept-alive connection as it was reused: once
                    # more on a new one.
                    conn, _ = await self._take(t, fresh=True)
                    conns.append(conn)
                    answer = await conn.send(head, body, keep)
                self._give_back(t, conn)  # before the next waiter takes one
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
        return answer

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
