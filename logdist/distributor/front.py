"""The distributor's front door: ingest answered on a lean path, every other route by aiohttp.

Emitters post packets tens of thousands of times a second. On that path aiohttp's per-request
machinery (request and response objects, middlewares, the router, a task per request) costs
several times logdist's own work, so the listening socket is served by this protocol instead:
llhttp (C, via httptools) parses, `POST /log-packet` and `POST /log-packets` are validated,
spooled and queued inline, and the 202 goes out as one write — no task, no objects per
request. Any other request (admin, dashboard, WebSockets, a wrong method on an ingest path)
hands the connection to aiohttp, bytes and all, and aiohttp serves it from then on; both
paths share the same validation, errors and counters, so a client cannot tell them apart.

A connection is closed after `keepalive_timeout` seconds idle; a request whose headers or body
stall for `body_timeout` seconds gets 408 and its connection closed.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import httptools
import orjson
from aiohttp import web

from logdist.config import DistributorConfig
from logdist.core.packet import Packet, packet_ids, parse_batch, parse_one
from logdist.distributor.service import Distributor
from logdist.errors import (
    Backpressure,
    BadRequest,
    LogdistError,
    PayloadTooLarge,
    RequestTimeout,
    Unauthorized,
    UnsupportedMediaType,
)
from logdist.http import BODY_IDLE_TIMEOUT, error_headers, mime_kind

ONE, MANY = 1, 2
INGEST_PATHS = {b"/log-packet": ONE, b"/log-packets": MANY}
REASONS = {
    202: b"Accepted",
    400: b"Bad Request",
    401: b"Unauthorized",
    408: b"Request Timeout",
    413: b"Payload Too Large",
    415: b"Unsupported Media Type",
    422: b"Unprocessable Entity",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Seconds a connection answered with "close" still reads (and drops) what the client sends.
LINGER_SECONDS = 2.0
# Request line and headers of one request, at most (aiohttp allows 8 KiB a line).
MAX_HEAD_BYTES = 64 * 1024
# Requests held at once waiting for room; past it a full queue answers 503 at once.
MAX_WAITING = 4096


def content_kind(ctype: bytes | None) -> str:
    """`json` or `ndjson` from a Content-Type header value (none at all is JSON)."""
    if not ctype:
        return "json"
    return mime_kind(ctype.split(b";", 1)[0].strip().lower().decode("latin-1"))


def response(
    status: int, body: bytes, headers: dict[str, str] | None = None, close: bool = False
) -> bytes:
    head = [
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
        % (status, REASONS.get(status, b"Error"), len(body))
    ]
    for name, value in (headers or {}).items():
        head.append(f"{name}: {value}\r\n".encode("latin-1"))
    if close:
        head.append(b"Connection: close\r\n")
    head.append(b"\r\n")
    head.append(body)
    return b"".join(head)


def parse(route: int, ctype: bytes | None, body: bytes, cfg: DistributorConfig) -> list[Packet]:
    """The packets of one ingest request (NDJSON ones in runs, see `run_messages`)."""
    kind = content_kind(ctype)
    if route == ONE:
        if kind != "json":
            raise UnsupportedMediaType(
                "POST /log-packet takes one packet as application/json; send NDJSON to /log-packets"
            )
        return [parse_one(body)]
    return parse_batch(
        body, ndjson=kind == "ndjson", run=cfg.forward_batch, run_messages=cfg.run_messages
    )


def take(
    d: Distributor, route: int, ctype: bytes | None, body: bytes
) -> tuple[list[Packet], Awaitable[None] | None]:
    """Validate and own the packets of one ingest request.

    Returns the packets and, when the spool syncs before answering, what to wait for first.
    """
    packets = parse(route, ctype, body, d.cfg)
    return packets, d.accept_now(packets)


def accepted(route: int, packets: list[Packet]) -> bytes:
    if route == ONE:
        return b'{"packetId":%s,"status":"accepted"}' % orjson.dumps(packets[0].id)
    ids = packet_ids(packets)
    return orjson.dumps({"accepted": len(ids), "packetIds": ids})


class HandOff(Exception):
    """Raised from a parser callback to stop parsing a request aiohttp will serve."""


@dataclass(eq=False)
class Waiting:
    """An ingest request parsed and waiting for room in the queue; its answer is `entry`."""

    conn: IngestProtocol
    entry: list[Any]
    route: int
    packets: list[Packet]
    deadline: float


class Front:
    """Builds the protocol for each connection, holds requests waiting for room, runs clocks."""

    def __init__(
        self,
        distributor: Distributor,
        keepalive_timeout: float = 15.0,
        body_timeout: float = BODY_IDLE_TIMEOUT,
    ) -> None:
        self.distributor = distributor
        self.keepalive_timeout = keepalive_timeout
        self.body_timeout = body_timeout
        self.connections: set[IngestProtocol] = set()
        self.handed_off = 0
        # Requests that found the queue full, oldest first; each holds its connection's reading.
        self.waiting: deque[Waiting] = deque()
        self.queue_wait = distributor.cfg.queue_wait
        distributor.dispatcher.on_room = self.room
        self._sweeper: asyncio.Task[None] | None = None
        cfg = distributor.cfg
        self.limits = {ONE: cfg.max_body_bytes, MANY: cfg.max_batch_bytes}
        self.token = cfg.ingest_token.encode() if cfg.ingest_token else None

    def factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return lambda: IngestProtocol(self, server)

    async def _sweep(self) -> None:
        # Waiting requests are looked at four times a second; connections' clocks (a pass over
        # every connection, 10,000 of them in the benchmark) once a second.
        tick = min(0.25, self.keepalive_timeout / 4, self.body_timeout / 4)
        every = max(1, round(min(1.0, self.keepalive_timeout / 2, self.body_timeout / 2) / tick))
        turn = 0
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            self.expire(now)
            turn += 1
            if turn % every == 0:
                for conn in list(self.connections):
                    conn.check_clock(now)

    def forget(self, conn: IngestProtocol) -> None:
        """`conn` went away: its waiting requests were never acknowledged and are dropped
        unaccepted (the sender still has them)."""
        self.waiting = deque(w for w in self.waiting if w.conn is not conn)

    def wait_for_room(
        self, conn: IngestProtocol, entry: list[Any], route: int, packets: list[Packet]
    ) -> bool:
        """Hold a request the full queue refused, if waiting is on and the line is not long."""
        if not self.queue_wait or len(self.waiting) >= MAX_WAITING:
            return False
        self.waiting.append(
            Waiting(conn, entry, route, packets, time.monotonic() + self.queue_wait)
        )
        return True

    def room(self) -> None:
        """The queue has room: take waiting requests in arrival order while they fit."""
        d = self.distributor
        while self.waiting:
            w = self.waiting[0]
            try:
                wait = d.accept_now(w.packets)
            except Backpressure:
                return
            except LogdistError as exc:
                self.waiting.popleft()
                w.conn.settle(w.entry, w.route, w.packets, None, exc)
                continue
            self.waiting.popleft()
            w.conn.settle(w.entry, w.route, w.packets, wait, None)

    def expire(self, now: float) -> None:
        """Answer 503 to requests that waited `queue_wait` seconds and still do not fit."""
        while self.waiting and self.waiting[0].deadline <= now:
            w = self.waiting.popleft()
            try:
                wait = self.distributor.accept_now(w.packets)
            except LogdistError as exc:
                w.conn.settle(w.entry, w.route, w.packets, None, exc)
            else:
                w.conn.settle(w.entry, w.route, w.packets, wait, None)

    async def close(self) -> None:
        """Stop the clocks; answer waiting requests 503; close idle connections now and busy
        ones once they have answered."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        retry = self.distributor.cfg.retry_after
        while self.waiting:
            w = self.waiting.popleft()
            stopping = Backpressure("the distributor is stopping; retry later", retry_after=retry)
            w.conn.settle(w.entry, w.route, w.packets, None, stopping)
        for conn in list(self.connections):
            conn.close_when_idle()


class IngestProtocol(asyncio.Protocol):
    """One client connection, while it sends ingest requests."""

    def __init__(self, front: Front, server: web.Server) -> None:
        self.front = front
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.last = time.monotonic()
        # Per request.
        self.in_request = False
        self.route = 0
        self.url = b""
        self.head_bytes = 0
        self.ctype: bytes | None = None
        self.auth: bytes | None = None
        self.expect = False
        self.length = -1
        self.body: list[bytes] = []
        self.size = 0
        self.refused = False
        # The request's bytes from its first, kept until its headers say where it goes.
        self.raw: list[bytes] | None = None
        self.chunk = b""
        self.completed_in_chunk = False
        self.handoff = False
        # Answers in request order; an entry is [ready, bytes, close-after].
        self.out: deque[list[Any]] = deque()
        self.closing = False
        self.lingering = False
        self.paused = False
        # Requests of this connection waiting for room in the queue.
        self.held = 0

    # -- connection -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)
        self.front.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.front.connections.discard(self)
        if self.held:
            self.front.forget(self)
            self.held = 0

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # answered and closing: what still comes is dropped
        self.last = time.monotonic()
        self.chunk = data
        self.completed_in_chunk = False
        if self.raw is not None:
            self.raw.append(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not self.handoff and not self.refused:
                self.refuse(BadRequest(f"malformed HTTP request: {exc}"))
                return
        if self.handoff:
            self.hand_off()

    def check_clock(self, now: float) -> None:
        idle = now - self.last
        if self.in_request:
            if idle > self.front.body_timeout and not self.refused:
                timeout = self.front.body_timeout
                self.refuse(
                    RequestTimeout(f"no request bytes for {timeout:g} s; send the whole request")
                )
        elif not self.out and idle > self.front.keepalive_timeout and self.transport is not None:
            self.transport.close()

    def close_when_idle(self) -> None:
        self.closing = True
        if not self.in_request and not self.out and self.transport is not None:
            self.transport.close()

    # -- parser callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.refused:
            return
        self.in_request = True
        self.route = 0
        self.url = b""
        self.head_bytes = 0
        self.ctype = self.auth = None
        self.expect = False
        self.length = -1
        self.body = []
        self.size = 0
        # Known only when the request starts its chunk (no pipelined request before it).
        self.raw = None if self.completed_in_chunk else [self.chunk]

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_bytes += len(url)
        if self.head_bytes > MAX_HEAD_BYTES:
            self.refuse(BadRequest(f"request line and headers exceed {MAX_HEAD_BYTES} bytes"))
            raise HandOff  # stop parsing: nothing more of this connection is read

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value)
        if self.head_bytes > MAX_HEAD_BYTES:
            self.refuse(BadRequest(f"request line and headers exceed {MAX_HEAD_BYTES} bytes"))
            raise HandOff
        name = name.lower()
        if name == b"content-type":
            self.ctype = value
        elif name == b"content-length":
            self.length = int(value) if value.isdigit() else -1
        elif name == b"authorization":
            self.auth = value
        elif name == b"expect":
            self.expect = value.lower() == b"100-continue"

    def on_headers_complete(self) -> None:
        path = self.url.split(b"?", 1)[0]
        route = INGEST_PATHS.get(path, 0)
        if not route or self.parser.get_method() != b"POST":
            self.handoff = True
            raise HandOff  # stops the parser here: aiohttp parses this request again
        self.route = route
        self.raw = None
        limit = self.front.limits[route]
        if self.length > limit:
            self.refuse(
                PayloadTooLarge(
                    f"body of {self.length} bytes exceeds the limit of {limit} bytes",
                    {"limit": limit},
                )
            )
        elif self.front.token is not None and not self.authorized():
            self.refuse(
                Unauthorized("this route needs the ingest token as 'Authorization: Bearer <token>'")
            )
        elif self.expect and self.transport is not None:
            self.transport.write(CONTINUE)

    def authorized(self) -> bool:
        assert self.front.token is not None
        auth = self.auth or b""
        presented = auth[7:].strip() if auth[:7].lower() == b"bearer " else b""
        return hmac.compare_digest(presented, self.front.token)

    def on_body(self, body: bytes) -> None:
        if self.handoff or self.refused:
            return
        self.size += len(body)
        limit = self.front.limits[self.route]
        if self.size > limit:
            self.refuse(
                PayloadTooLarge(f"body exceeds the limit of {limit} bytes", {"limit": limit})
            )
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.completed_in_chunk = True
        self.in_request = False
        if self.handoff or self.refused:
            return
        d = self.front.distributor
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body = []
        close = not self.parser.should_keep_alive() or self.closing
        packets: list[Packet] = []
        try:
            packets = parse(self.route, self.ctype, body, d.cfg)
            if self.front.waiting:
                raise d.dispatcher.queue_full()  # others wait already: no overtaking them
            wait = d.accept_now(packets)
        except Backpressure as exc:
            entry = [False, b"", close]
            if packets and self.front.wait_for_room(self, entry, self.route, packets):
                self.out.append(entry)
                self.held += 1
                self.pause()
                d.dispatcher.wake()  # routing tells `room` when there is some
                return
            d.counters.rejected[exc.code] += 1
            self.answer(error(exc, close), close)
            return
        except LogdistError as exc:
            d.counters.rejected[exc.code] += 1
            self.answer(error(exc, close), close)
            return
        if wait is None:
            self.answer(response(202, accepted(self.route, packets), close=close), close)
            return
        entry = [False, b"", close]
        self.out.append(entry)
        asyncio.get_running_loop().create_task(self.answer_later(entry, self.route, packets, wait))

    # -- answers --------------------------------------------------------------------------

    def answer(self, data: bytes, close: bool) -> None:
        if self.out:
            self.out.append([True, data, close])
            return
        transport = self.transport
        assert transport is not None
        if transport.is_closing() or self.lingering:
            return
        transport.write(data)
        if close:
            self.linger()

    def linger(self) -> None:
        """Close after an answer the way nginx's lingering close does: send FIN, then read and
        drop what the client still sends for a moment, so its unread bytes do not make our
        close a reset that destroys the answer before it is read."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.lingering = True
        if self.paused:
            transport.resume_reading()
            self.paused = False
        if transport.can_write_eof():
            transport.write_eof()
            asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()

    def settle(
        self,
        entry: list[Any],
        route: int,
        packets: list[Packet],
        wait: Awaitable[None] | None,
        exc: LogdistError | None,
    ) -> None:
        """A request that waited for room was taken (`wait` first, if any) or refused (`exc`)."""
        self.held -= 1
        if self.held == 0:
            self.resume()
        if exc is not None:
            self.front.distributor.counters.rejected[exc.code] += 1
            entry[0], entry[1] = True, error(exc, entry[2])
        elif wait is None:
            entry[0], entry[1] = True, response(202, accepted(route, packets), close=entry[2])
        else:
            asyncio.get_running_loop().create_task(self.answer_later(entry, route, packets, wait))
            return
        self.flush()

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.handoff:
            self.transport.resume_reading()
            self.paused = False

    async def answer_later(
        self, entry: list[Any], route: int, packets: list[Packet], wait: Awaitable[None]
    ) -> None:
        try:
            await wait
        except LogdistError as exc:
            self.front.distributor.counters.rejected[exc.code] += 1
            entry[1] = error(exc, entry[2])
        else:
            entry[1] = response(202, accepted(route, packets), close=entry[2])
        entry[0] = True
        self.flush()

    def flush(self) -> None:
        transport = self.transport
        assert transport is not None
        while self.out and self.out[0][0]:
            _, data, close = self.out.popleft()
            if transport.is_closing() or self.lingering:
                continue
            transport.write(data)
            if close:
                self.linger()
        if not self.out:
            if self.closing and not self.in_request:
                transport.close()
            elif self.handoff:
                self.hand_off()

    def refuse(self, exc: LogdistError) -> None:
        """Answer `exc` and close: the rest of this request is not read."""
        self.refused = True
        self.front.distributor.counters.rejected[exc.code] += 1
        self.answer(error(exc, close=True), close=True)

    # -- to aiohttp -----------------------------------------------------------------------

    def hand_off(self) -> None:
        """Give the connection, from the start of this request, to aiohttp's protocol."""
        transport = self.transport
        assert transport is not None
        if self.out:
            self.pause()  # answers owed first; flush() comes back here
            return
        if self.raw is None:
            if not transport.is_closing():
                self.refuse(
                    BadRequest(
                        "requests pipelined after an ingest request must be ingest requests too;"
                        " send other requests on their own connection"
                    )
                )
            return
        raw = b"".join(self.raw)
        self.front.connections.discard(self)
        self.front.handed_off += 1
        handler = self.server()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        handler.data_received(raw)
        if self.paused:
            transport.resume_reading()


def error(exc: LogdistError, close: bool) -> bytes:
    return response(exc.status, orjson.dumps(exc.to_json()), error_headers(exc), close=close)
