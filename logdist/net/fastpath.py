"""The lean front door: a daemon's hot POST routes answered inline, every other route by aiohttp.

Emitters post packets tens of thousands of times a second, and the distributor posts batches
of a megabyte to each analyzer. On those paths aiohttp's per-request machinery (request and
response objects, middlewares, the router, a task per request, a body read chunk by chunk)
costs as much as the daemon's own work, so the listening socket is served by this protocol
instead: llhttp (C, via httptools) parses, a hot route's body is handed to the daemon's
`FrontDoor.handle` as bytes, and its answer is written with the others of that loop turn at
its end (see `Connection.send`) — no task, no objects per request. Any other request (admin,
dashboard, WebSockets, a wrong method on a hot path) hands the connection to aiohttp, bytes
and all, and aiohttp serves it from then on; both paths share
the daemon's validation, errors and counters, so a client cannot tell them apart.

Keep-alive, pipelining (answers in request order), `Expect: 100-continue`, HTTP/1.0 and
chunked bodies work as in aiohttp; a body over the route's limit gets 413 before it is read,
a missing token 401, malformed HTTP a JSON 400. A connection is closed after
`keepalive_timeout` seconds idle; a request whose headers or body stall for `body_timeout`
seconds gets 408 and its connection closed.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import httptools
from aiohttp import web

from logdist.errors import (
    BadRequest,
    LogdistError,
    PayloadTooLarge,
    RequestTimeout,
    Unauthorized,
)
from logdist.net.answering import Answering
from logdist.net.answers import CONTINUE, INTERNAL_ERROR, error, response
from logdist.net.hosts import HostRule
from logdist.net.web import BODY_IDLE_TIMEOUT, bearer_matches

log = logging.getLogger("logdist.front")

# Request line and headers of one request, at most (aiohttp allows 8 KiB a line).
MAX_HEAD_BYTES = 64 * 1024


# The request headers the lean path reads; any other is skipped after one lookup.
_CTYPE, _LENGTH, _AUTH, _EXPECT, _ENCODING, _HOST = range(6)
_WANTED = {
    b"content-type": _CTYPE,
    b"content-length": _LENGTH,
    b"authorization": _AUTH,
    b"expect": _EXPECT,
    b"content-encoding": _ENCODING,
    b"host": _HOST,
}


class HandOff(Exception):
    """Raised from a parser callback to stop parsing a request aiohttp will serve."""


class FrontDoor(abc.ABC):
    """A daemon's lean routes: which paths, their body limits, its token, how it answers.

    `routes` maps a path to a route number (POST only); `limits` a route number to its body
    limit in bytes; `token`, when set, is the bearer token every lean route needs. A subclass
    answers in `handle` and counts refusals in `rejected`.
    """

    def __init__(
        self,
        routes: dict[bytes, int],
        limits: dict[int, int],
        token: bytes | None = None,
        keepalive_timeout: float = 15.0,
        body_timeout: float = BODY_IDLE_TIMEOUT,
    ) -> None:
        self.routes = routes
        self.limits = limits
        self.token = token
        # The Host names it answers to (None: any); the daemon sets it.
        self.hosts: HostRule | None = None
        self.keepalive_timeout = keepalive_timeout
        self.body_timeout = body_timeout
        self.connections: set[Connection] = set()
        self.handed_off = 0
        self._sweeper: asyncio.Task[None] | None = None
        # Connections with answers to write at the end of this loop turn (see `Connection.send`).
        self.unsent: list[Connection] = []

    # -- for the daemon -------------------------------------------------------------------

    @abc.abstractmethod
    def handle(self, conn: Connection, route: int, ctype: bytes | None, body: bytes) -> None:
        """Answer one whole request on `route` (`conn.answer`, or `conn.defer` and later
        `conn.fulfil`); every daemon's door says how."""

    def rejected(self, exc: LogdistError) -> None:  # noqa: B027 - optional hook
        """A request on a lean route was refused with `exc` (for the daemon's counters)."""

    def tick(self, now: float) -> None:  # noqa: B027 - optional hook
        """Called four times a second (the distributor expires requests waiting for room)."""

    def forget(self, conn: Connection) -> None:  # noqa: B027 - optional hook
        """`conn` went away while holding requests (see `Connection.hold`)."""

    # -- serving --------------------------------------------------------------------------

    def factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return lambda: Connection(self, server)

    async def _sweep(self) -> None:
        # `tick` four times a second; connections' clocks (a pass over every connection,
        # 10,000 of them in the benchmark) once a second.
        tick = min(0.25, self.keepalive_timeout / 4, self.body_timeout / 4)
        every = max(1, round(min(1.0, self.keepalive_timeout / 2, self.body_timeout / 2) / tick))
        turn = 0
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            self.tick(now)
            turn += 1
            if turn % every == 0:
                for conn in list(self.connections):
                    conn.check_clock(now)

    def write_unsent(self) -> None:
        conns, self.unsent = self.unsent, []
        for conn in conns:
            conn.push()

    async def close(self) -> None:
        """Stop the clocks; close idle connections now and busy ones once they have answered."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            conn.close_when_idle()


class Connection(Answering, asyncio.Protocol):
    """One client connection, while it sends requests to lean routes."""

    door: FrontDoor

    def __init__(self, door: FrontDoor, server: web.Server) -> None:
        self.door = door
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
        self.host: bytes | None = None
        self.expect = False
        # A compressed body (Content-Encoding other than identity) is aiohttp's to decode.
        self.encoded = False
        self.length = -1
        self.body: list[bytes] = []
        self.size = 0
        self.refused = False
        # Whether the request being answered asks for the connection to close after it.
        self.close_after = False
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
        # Requests of this connection held by the daemon, reading paused meanwhile.
        self.held = 0
        # Answers not yet written: they go out at the end of the loop turn (see `send`).
        self.unsent: list[bytes] = []

    # -- connection -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)
        self.door.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.door.connections.discard(self)
        if self.held:
            self.door.forget(self)
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
            if idle > self.door.body_timeout and not self.refused:
                timeout = self.door.body_timeout
                self.refuse(
                    RequestTimeout(f"no request bytes for {timeout:g} s; send the whole request")
                )
        elif not self.out and idle > self.door.keepalive_timeout and self.transport is not None:
            self.push()
            self.transport.close()

    def close_when_idle(self) -> None:
        self.closing = True
        if not self.in_request and not self.out and self.transport is not None:
            self.push()
            self.transport.close()

    # -- parser callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.refused:
            return
        self.in_request = True
        self.route = 0
        self.url = b""
        self.head_bytes = 0
        self.ctype = self.auth = self.host = None
        self.expect = self.encoded = False
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
        wanted = _WANTED.get(name.lower())
        if wanted is None:
            return
        if wanted == _CTYPE:
            self.ctype = value
        elif wanted == _LENGTH:
            self.length = int(value) if value.isdigit() else -1
        elif wanted == _AUTH:
            self.auth = value
        elif wanted == _ENCODING:
            self.encoded = value.strip().lower() not in (b"", b"identity")
        elif wanted == _HOST:
            self.host = value
        else:
            self.expect = value.lower() == b"100-continue"

    def on_headers_complete(self) -> None:
        path = self.url.split(b"?", 1)[0]
        route = self.door.routes.get(path, 0)
        if not route or self.parser.get_method() != b"POST" or self.encoded:
            self.handoff = True
            raise HandOff  # stops the parser here: aiohttp parses this request again
        self.route = route
        self.raw = None
        limit = self.door.limits[route]
        hosts = self.door.hosts
        host = self.host.decode("latin-1") if self.host is not None else None
        if hosts is not None and host is not None and not hosts.allows(host):
            self.refuse(hosts.refusal(host))
        elif self.length > limit:
            self.refuse(
                PayloadTooLarge(
                    f"body of {self.length} bytes exceeds the limit of {limit} bytes",
                    {"limit": limit},
                )
            )
        elif self.door.token is not None and not self.authorized():
            self.refuse(
                Unauthorized("this route needs the ingest token as 'Authorization: Bearer <token>'")
            )
        elif self.expect and self.transport is not None:
            self.push()
            self.transport.write(CONTINUE)

    def authorized(self) -> bool:
        assert self.door.token is not None
        return bearer_matches(self.auth, self.door.token)

    def on_body(self, body: bytes) -> None:
        if self.handoff or self.refused:
            return
        self.size += len(body)
        limit = self.door.limits[self.route]
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
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body = []
        self.close_after = not self.parser.should_keep_alive() or self.closing
        try:
            self.door.handle(self, self.route, self.ctype, body)
        except LogdistError as exc:
            self.door.rejected(exc)
            self.answer(error(exc, self.close_after))
        except Exception:
            # A bug, or the machine (a full disk): what aiohttp's route answers too.
            path = self.url.split(b"?", 1)[0].decode("latin-1", "replace")
            log.exception("event=handler_error method=POST path=%s", path)
            self.answer(response(500, INTERNAL_ERROR, close=self.close_after))

    # -- answers --------------------------------------------------------------------------

    def refuse(self, exc: LogdistError) -> None:
        """Answer `exc` and close: the rest of this request is not read."""
        self.refused = True
        self.door.rejected(exc)
        self.close_after = True
        self.answer(error(exc, close=True))

    # -- to aiohttp -----------------------------------------------------------------------

    def hand_off(self) -> None:
        """Give the connection, from the start of this request, to aiohttp's protocol."""
        transport = self.transport
        assert transport is not None
        if self.out:
            # Answers owed first; flush() comes back here.
            if not self.paused:
                transport.pause_reading()
                self.paused = True
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
        self.push()
        self.door.connections.discard(self)
        self.door.handed_off += 1
        handler = self.server()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        handler.data_received(raw)
        if self.paused:
            transport.resume_reading()
