"""Syslog in: TCP (RFC 6587 framing), TLS (RFC 5425) and UDP listeners that gather messages into
packets. A TLS connection is a TCP one once its handshake is done (net.tls).

Messages are gathered per connection (UDP: per sending host) into packets of up to
`formats.syslog.MESSAGES_PER_PACKET` messages or GATHER_SECONDS, then owned like any ingest request
(`Intake.accept_now`: queued, and spooled when there is a spool), from the emitter
`syslog:HOST` for fair admission, dispatch and limits.

Reading syslog costs a few microseconds of Python a message, so TCP streams are framed, read
and made into packet bodies in the parse processes (`parsing`, running
`formats.syslog_stream.Streams`), each connection always in the same one; the distributor only
owns the packets they make. Without parse processes it reads them itself.

Syslog has no acknowledgement, so each transport pushes back the one way it can:

- TCP: a connection whose packets do not fit (queue, spool or dead letters full) stops being
  read, and keeps them until they fit; the sender's writes then block in TCP. A connection holds
  at most one read and the messages gathering into its next packet, so memory stays bounded.
  Nothing read is dropped, even when the sender closes meanwhile; a distributor stopped while a
  connection waits loses what it held (logged). One refused 429 (its host past its fair share
  or limit) waits out its Retry-After without holding up the connections behind it.
- UDP: a datagram cannot be made to wait. What comes while the queue is full is dropped,
  counted (`logdist_rejected_total{input="syslog",reason="backpressure"}`) and logged once a
  second.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from datetime import UTC, datetime
from typing import Any, cast

from logdist.config import SyslogConfig
from logdist.distributor.inputs.intake import Intake
from logdist.distributor.inputs.parsing import GONE, ParseProcesses
from logdist.errors import LogdistError, Throttled
from logdist.events import event
from logdist.formats.packet import Made, Packet
from logdist.formats.syslog import EMITTER, parse_message
from logdist.formats.syslog_stream import Streams, worker_call
from logdist.net.server import ListenError, describe_bind_error
from logdist.net.tls import ServerTls, TlsServer

log = logging.getLogger("logdist.distributor")

GATHER_SECONDS = 0.2
# Seconds between tries of a connection whose packets were refused for a reason other than a
# full queue (a spool that cannot be written), and between UDP drop reports.
RETRY_SECONDS = 1.0
INPUT = "syslog"


class Parser:
    """Where TCP streams are read: `Streams` here, or in the parse processes (a stream always
    in the same one, so its frames stay in order). Calls answer futures, done at once here."""

    def __init__(self, procs: ParseProcesses, prefix: str, max_frame: int) -> None:
        self.procs = procs
        self.here = Streams(prefix, max_frame) if not len(procs) else None

    def call(self, name: str, stream: int, *args: Any) -> asyncio.Future[Any]:
        if self.here is not None:
            return self.procs.call(None, getattr(self.here, name), stream, *args)
        return self.procs.call(stream, worker_call, name, stream, *args)


class TcpConnection(asyncio.Protocol):
    """One sender's stream. Each read is handed to the parser with reading paused, and reading
    resumes once the packets it made are owned: one read at a time, in order, per connection
    (so the event loop is not held by one busy sender), and one read at most held."""

    def __init__(self, listener: SyslogListener, stream: int) -> None:
        self.listener = listener
        self.stream = stream
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        # Who its packets are from, for fair admission and dispatch: the sending host.
        self.emitter = EMITTER
        # Packets made and not yet owned, in order: while any is here, reading is stopped.
        self.held: deque[Packet] = deque()
        self.syncing = False  # a packet is owned once the spool syncs: the next waits for it
        self.in_line = False  # in the listener's `waiting`
        # Its host was refused 429 (not for room): offered again from then (loop time).
        self.throttled_until = 0.0
        self.closed = False
        self.parsing = 0  # calls to the parser not answered yet
        self.timer: asyncio.TimerHandle | None = None  # messages gathering in the parser

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.listener.connections.add(self)  # over TLS, once the handshake is done
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        self.emitter = f"{EMITTER}:{self.peer}" if self.peer else EMITTER

    def data_received(self, data: bytes) -> None:
        self.pause()
        self.parse("feed", data, self.peer, datetime.now(UTC))

    def connection_lost(self, exc: Exception | None) -> None:
        # What was read is owned even when the sender has gone: its last line, and all
        # gathered, are made packets.
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.listener.connections.discard(self)
        self.parse("close", self.peer, datetime.now(UTC))

    def parse(self, name: str, *args: Any) -> None:
        self.parsing += 1
        self.listener.parsing += 1
        try:
            future = self.listener.parser.call(name, self.stream, *args)
        except GONE as exc:
            self.parsing -= 1
            self.listener.parsing -= 1
            self.failed(exc)
            return
        future.add_done_callback(self.parsed)

    def gather_done(self) -> None:
        self.timer = None
        self.parse("flush")

    def parsed(self, future: asyncio.Future[Any]) -> None:
        self.parsing -= 1
        self.listener.parsing -= 1
        try:
            made, oversize, gathering = future.result()
        except (*GONE, asyncio.CancelledError) as exc:
            self.failed(exc)
            return
        if oversize:
            self.listener.too_large(oversize)
        self.held.extend(Packet(id=pid, emitter=self.emitter, messages=n, body=body)
                         for pid, n, body, _ in made)  # fmt: skip
        if gathering and self.timer is None and not self.closed:
            self.timer = asyncio.get_running_loop().call_later(GATHER_SECONDS, self.gather_done)
        self.push()

    def failed(self, exc: BaseException) -> None:
        """The parse process died: what it held of this stream is gone, and without its
        framing state the rest of the stream cannot be read; the sender must reconnect."""
        event(log, "syslog_parser_failed", logging.ERROR, peer=self.peer,
              error=type(exc).__name__)  # fmt: skip
        self.listener.parser.procs.close_broken()
        if self.transport is not None:
            self.transport.abort()

    def push(self) -> bool:
        """Own the held packets in order while they fit; stop reading at one that does not.
        False when one did not fit (the connection then waits in line for room)."""
        while self.held and not self.syncing:
            packet = self.held[0]
            try:
                wait = self.listener.own([packet])
            except LogdistError as exc:
                # Its host over its share or limit (429): the others need not wait for it,
                # and it is offered again once its Retry-After has passed.
                self.throttled_until = (
                    asyncio.get_running_loop().time() + exc.retry_after
                    if isinstance(exc, Throttled)
                    else 0.0
                )
                self.pause()
                if not self.in_line:
                    self.in_line = True
                    self.listener.waiting.append(self)
                    # Routing tells `room` when there is some.
                    self.listener.intake.wake()
                return False
            self.held.popleft()
            if wait is not None:  # owned once the spool syncs: read no more meanwhile
                self.syncing = True
                self.pause()
                asyncio.get_running_loop().create_task(self.synced(packet, wait))
        if not self.held and not self.syncing:
            self.resume()
        return True

    async def synced(self, packet: Packet, wait: Any) -> None:
        try:
            await wait
        except LogdistError:
            self.held.appendleft(packet)  # refused after all: offered again
        else:
            self.listener.took([packet])
        self.syncing = False
        self.push()

    def pause(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume(self) -> None:
        t = self.transport
        if t is not None and not self.closed and not self.parsing and not t.is_reading():
            t.resume_reading()


class UdpListener(asyncio.DatagramProtocol):
    """Datagrams, one message each, gathered in this process (see Streams.gather), a stream
    for each sending host (its packets are from `syslog:HOST`)."""

    def __init__(self, listener: SyslogListener) -> None:
        self.listener = listener
        self.streams = Streams(f"{listener.prefix}-udp", listener.cfg.max_message_bytes)
        self.timer: asyncio.TimerHandle | None = None
        self.hosts: dict[str, int] = {}  # sending host -> its stream, until the next flush

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        frame = data.rstrip(b"\r\n\x00")
        if not frame.strip():
            return
        if len(frame) > self.listener.cfg.max_message_bytes:
            self.listener.too_large(1)
            return
        host = str(addr[0])
        stream = self.hosts.get(host)
        if stream is None:
            stream = self.hosts[host] = len(self.hosts)
        made, gathering = self.streams.gather(
            stream, [parse_message(frame, host, datetime.now(UTC))]
        )
        self.own(made, host)
        if gathering and self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(GATHER_SECONDS, self.flush)

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = None
        hosts, self.hosts = self.hosts, {}
        for host, stream in hosts.items():
            self.own(self.streams.close(stream, host, datetime.now(UTC))[0], host)

    def own(self, made: list[Made], host: str) -> None:
        for pid, n, body, _ in made:
            packet = Packet(id=pid, emitter=f"{EMITTER}:{host}", messages=n, body=body)
            try:
                wait = self.listener.own([packet])
            except LogdistError as exc:
                self.listener.dropped(packet.messages, exc.code)
                continue
            if wait is not None:
                asyncio.get_running_loop().create_task(self.synced(packet, wait))

    async def synced(self, packet: Packet, wait: Any) -> None:
        try:
            await wait
        except LogdistError as exc:
            self.listener.dropped(packet.messages, exc.code)
        else:
            self.listener.took([packet])


class SyslogListener:
    """The syslog ports of one distributor."""

    def __init__(
        self, intake: Intake, cfg: SyslogConfig, procs: ParseProcesses, tls: ServerTls | None
    ) -> None:
        self.intake = intake
        self.cfg = cfg
        self.tls = tls
        self.prefix = procs.prefix  # syslog-TOKEN, new at each start
        self.parser = Parser(procs, self.prefix, cfg.max_message_bytes)
        self.streams = 0  # connections so far: each one's stream number
        self.parsing = 0  # parser calls not answered yet, all connections'
        self.connections: set[TcpConnection] = set()
        # Connections holding refused packets, oldest first.
        self.waiting: deque[TcpConnection] = deque()
        self.tcp_server: asyncio.Server | TlsServer | None = None
        self.tls_server: asyncio.Server | TlsServer | None = None
        self.udp: asyncio.DatagramTransport | None = None
        self.udp_protocol: UdpListener | None = None
        self.tcp_port: int | None = None
        self.tls_port: int | None = None
        self.udp_port: int | None = None
        self.unreported = 0  # UDP messages dropped since the last report
        self.ticker: asyncio.Task[None] | None = None
        intake.on_room(self.room)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host = self.cfg.host
        if self.cfg.tcp is not None or self.cfg.tls is not None:
            await self.parser.procs.start()
        if self.cfg.tcp is not None:
            self.tcp_server = await self._serve("tcp", self.cfg.tcp)
            self.tcp_port = self.tcp_server.sockets[0].getsockname()[1]
        if self.cfg.tls is not None:
            assert self.tls is not None  # the config says so
            self.tls_server = await self._serve("tls", self.cfg.tls, self.tls)
            self.tls_port = self.tls_server.sockets[0].getsockname()[1]
        if self.cfg.udp is not None:
            try:
                transport, protocol = await loop.create_datagram_endpoint(
                    lambda: UdpListener(self), local_addr=(host, self.cfg.udp)
                )
            except OSError as exc:
                raise _cannot("udp", host, self.cfg.udp, exc) from None
            self.udp, self.udp_protocol = transport, protocol
            self.udp_port = transport.get_extra_info("sockname")[1]
        if self.tcp_port or self.tls_port or self.udp_port:
            self.ticker = loop.create_task(self._tick())
            event(log, "syslog_listening", host=host, tcp=self.tcp_port, udp=self.udp_port,
                  tls=self.tls_port, parse_processes=len(self.parser.procs))  # fmt: skip

    async def _serve(
        self, kind: str, port: int, tls: ServerTls | None = None
    ) -> asyncio.Server | TlsServer:
        try:
            if tls is not None:
                return await tls.serve(self._connection, self.cfg.host, port)
            return await asyncio.get_running_loop().create_server(
                self._connection, self.cfg.host, port, reuse_address=True
            )
        except OSError as exc:
            raise _cannot(kind, self.cfg.host, port, exc) from None

    def _connection(self) -> TcpConnection:
        self.streams += 1
        return TcpConnection(self, self.streams)

    def own(self, packets: list[Packet]) -> Any:
        """`Intake.accept_now`, counted as syslog's when taken at once."""
        wait = self.intake.accept_now(packets)
        if wait is None:
            self.took(packets)
        return wait

    def took(self, packets: list[Packet]) -> None:
        self.intake.counters.input_took(INPUT, packets)

    def too_large(self, count: int) -> None:
        self.intake.counters.input_refused(INPUT, "payload_too_large", count)
        event(log, "syslog_too_large", logging.WARNING, messages=count,
              limit=self.cfg.max_message_bytes)  # fmt: skip

    def dropped(self, count: int, code: str) -> None:
        self.intake.counters.input_refused(INPUT, code, count)
        self.unreported += count

    def room(self) -> None:
        """The queue has room: connections holding packets offer them again, oldest first
        (one whose host is throttled keeps its place until its Retry-After has passed, and
        the next is offered)."""
        throttled: list[TcpConnection] = []
        now = asyncio.get_running_loop().time()
        while self.waiting:
            conn = self.waiting[0]
            if now < conn.throttled_until or not conn.push():
                if not conn.throttled_until:
                    break  # no room: the rest wait too
                throttled.append(self.waiting.popleft())
                continue
            self.waiting.popleft()
            conn.in_line = False
        self.waiting.extendleft(reversed(throttled))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(RETRY_SECONDS)
            if self.unreported:
                event(log, "syslog_udp_dropped", logging.WARNING, messages=self.unreported,
                      reason="the queue is full", total=self.udp_dropped)  # fmt: skip
                self.unreported = 0
            if self.waiting:  # a full spool or dead-letter store does not signal room
                self.room()

    @property
    def udp_dropped(self) -> int:
        rejected = self.intake.counters.input(INPUT).rejected
        return sum(n for code, n in rejected.items() if code != "payload_too_large")

    async def close(self) -> None:
        """Stop listening; own what was read if it fits, and say what could not be."""
        if self.ticker is not None:
            self.ticker.cancel()
        for server in (self.tcp_server, self.tls_server):
            if server is not None:
                server.close()
        if self.udp is not None:
            self.udp.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()  # its close is handed to the parser
        if self.udp_protocol is not None:
            self.udp_protocol.flush()
        await asyncio.sleep(0)  # the aborted connections' close calls go to the parser
        for _ in range(500):  # what the parser has in hand, 5 s at most
            if not self.parsing:
                break
            await asyncio.sleep(0.01)
        self.room()
        lost = sum(p.messages for c in self.waiting for p in c.held)
        if lost:
            event(log, "syslog_lost_at_stop", logging.ERROR, messages=lost,
                  reason="the queue stayed full")  # fmt: skip
        for server in (self.tcp_server, self.tls_server):
            if server is not None:
                await server.wait_closed()


def _cannot(kind: str, host: str, port: int, exc: OSError) -> ListenError:
    return ListenError(
        f"cannot listen for syslog on {kind} {host}:{port}: {describe_bind_error(exc)}"
    )
