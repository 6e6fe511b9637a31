"""Syslog in: TCP (RFC 6587 framing) and UDP listeners that gather messages into packets.

Messages are gathered per connection (UDP: per listener) into packets of up to
MESSAGES_PER_PACKET messages or GATHER_SECONDS, then owned like any ingest request
(`Distributor.accept_now`: queued, and spooled when there is a spool).

Syslog has no acknowledgement, so each transport pushes back the one way it can:

- TCP: a connection whose packets do not fit (queue, spool or dead letters full) stops being
  read, and keeps them until they fit; the sender's writes then block in TCP. A connection holds
  at most what one read brought, so memory stays bounded. Nothing read is dropped, even when the
  sender closes meanwhile; a distributor stopped while a connection waits loses what it held
  (logged).
- UDP: a datagram cannot be made to wait. What comes while the queue is full is dropped,
  counted (`logdist_rejected_total{input="syslog",reason="backpressure"}`) and logged once a
  second.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from datetime import UTC, datetime
from typing import Any, cast

from logdist.config import SyslogConfig
from logdist.core.packet import Packet, parse_packet
from logdist.core.syslog import EMITTER, Framer, parse_message
from logdist.daemon import ListenError, describe_bind_error
from logdist.distributor.service import Distributor
from logdist.errors import LogdistError
from logdist.log import event

log = logging.getLogger("logdist.distributor")

MESSAGES_PER_PACKET = 500
GATHER_SECONDS = 0.2
# Seconds between tries of a connection whose packets were refused for a reason other than a
# full queue (a spool that cannot be written), and between UDP drop reports.
RETRY_SECONDS = 1.0
INPUT = "syslog"


class Gathered:
    """Messages of one connection (or of the UDP listener) on their way to becoming packets."""

    def __init__(self, listener: SyslogListener) -> None:
        self.listener = listener
        self.messages: list[dict[str, Any]] = []
        self.timer: asyncio.TimerHandle | None = None

    def add(self, messages: list[dict[str, Any]]) -> None:
        self.messages.extend(messages)
        if len(self.messages) >= MESSAGES_PER_PACKET:
            self.flush()
        elif self.timer is None and self.messages:
            self.timer = asyncio.get_running_loop().call_later(GATHER_SECONDS, self.flush)

    def take(self) -> list[Packet]:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        messages, self.messages = self.messages, []
        return self.listener.packets(messages)

    def flush(self) -> None:
        raise NotImplementedError


class TcpConnection(asyncio.Protocol, Gathered):
    def __init__(self, listener: SyslogListener) -> None:
        Gathered.__init__(self, listener)
        self.framer = Framer(listener.cfg.max_message_bytes)
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        # Packets made and not yet owned, in order: while any is here, reading is stopped.
        self.held: deque[Packet] = deque()
        self.syncing = False  # a packet is owned once the spool syncs: the next waits for it
        self.in_line = False  # in the listener's `waiting`
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""

    def data_received(self, data: bytes) -> None:
        framer = self.framer
        oversize = framer.oversize
        messages = framer.messages(data, self.peer, datetime.now(UTC))
        if framer.oversize != oversize:
            self.listener.too_large(framer.oversize - oversize)
        if messages:
            self.add(messages)
        # One read a turn of the event loop: the loop would otherwise read a busy connection
        # again and again (libuv up to 32 times) before probes and forwards get their turn.
        if self.transport is not None and not self.closed and self.transport.is_reading():
            self.transport.pause_reading()
            asyncio.get_running_loop().call_soon(self.next_read)

    def next_read(self) -> None:
        if not self.held and not self.syncing:
            self.resume()

    def eof_received(self) -> bool | None:
        rest = self.framer.rest()
        if rest is not None:
            self.messages.append(parse_message(rest, self.peer, datetime.now(UTC)))
        return None  # close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.listener.connections.discard(self)
        self.flush()  # what was read is owned even when the sender has gone

    def flush(self) -> None:
        self.held.extend(self.take())
        self.push()

    def push(self) -> bool:
        """Own the held packets in order while they fit; stop reading at one that does not.
        False when one did not fit (the connection then waits in line for room)."""
        while self.held and not self.syncing:
            packet = self.held[0]
            try:
                wait = self.listener.own([packet])
            except LogdistError:
                self.pause()
                if not self.in_line:
                    self.in_line = True
                    self.listener.waiting.append(self)
                    # Routing tells `room` when there is some.
                    self.listener.distributor.dispatcher.wake()
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
        if self.transport is not None and not self.closed and not self.transport.is_reading():
            self.transport.resume_reading()


class UdpListener(asyncio.DatagramProtocol, Gathered):
    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        frame = data.rstrip(b"\r\n\x00")
        if not frame.strip():
            return
        if len(frame) > self.listener.cfg.max_message_bytes:
            self.listener.too_large(1)
            return
        self.add([parse_message(frame, str(addr[0]), datetime.now(UTC))])

    def flush(self) -> None:
        for packet in self.take():
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

    def __init__(self, distributor: Distributor, cfg: SyslogConfig) -> None:
        self.distributor = distributor
        self.cfg = cfg
        self.boot = secrets.token_hex(6)  # packet ids: syslog-BOOT-N, unique across restarts
        self.seq = 0
        self.connections: set[TcpConnection] = set()
        # Connections holding refused packets, oldest first.
        self.waiting: deque[TcpConnection] = deque()
        self.tcp_server: asyncio.Server | None = None
        self.udp: asyncio.DatagramTransport | None = None
        self.udp_protocol: UdpListener | None = None
        self.tcp_port: int | None = None
        self.udp_port: int | None = None
        self.unreported = 0  # UDP messages dropped since the last report
        self.ticker: asyncio.Task[None] | None = None
        distributor.dispatcher.on_room.append(self.room)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host = self.cfg.host
        if self.cfg.tcp is not None:
            try:
                self.tcp_server = await loop.create_server(
                    self._connection, host, self.cfg.tcp, reuse_address=True
                )
            except OSError as exc:
                raise _cannot("tcp", host, self.cfg.tcp, exc) from None
            self.tcp_port = self.tcp_server.sockets[0].getsockname()[1]
        if self.cfg.udp is not None:
            try:
                transport, protocol = await loop.create_datagram_endpoint(
                    lambda: UdpListener(self), local_addr=(host, self.cfg.udp)
                )
            except OSError as exc:
                raise _cannot("udp", host, self.cfg.udp, exc) from None
            self.udp, self.udp_protocol = transport, protocol
            self.udp_port = transport.get_extra_info("sockname")[1]
        if self.tcp_server is not None or self.udp is not None:
            self.ticker = loop.create_task(self._tick())
            event(log, "syslog_listening", host=host, tcp=self.tcp_port, udp=self.udp_port)

    def _connection(self) -> TcpConnection:
        conn = TcpConnection(self)
        self.connections.add(conn)
        return conn

    def packets(self, messages: list[dict[str, Any]]) -> list[Packet]:
        out = []
        for start in range(0, len(messages), MESSAGES_PER_PACKET):
            self.seq += 1
            out.append(
                parse_packet(
                    {
                        "packetId": f"syslog-{self.boot}-{self.seq}",
                        "emitter": EMITTER,
                        "messages": messages[start : start + MESSAGES_PER_PACKET],
                    }
                )
            )
        return out

    def own(self, packets: list[Packet]) -> Any:
        """`Distributor.accept_now`, counted as syslog's when taken at once."""
        wait = self.distributor.accept_now(packets)
        if wait is None:
            self.took(packets)
        return wait

    def took(self, packets: list[Packet]) -> None:
        self.distributor.counters.input_took(INPUT, packets)

    def too_large(self, count: int) -> None:
        counters = self.distributor.counters
        for _ in range(count):
            counters.input_refused(INPUT, "payload_too_large")
        event(log, "syslog_too_large", logging.WARNING, messages=count,
              limit=self.cfg.max_message_bytes)  # fmt: skip

    def dropped(self, count: int, code: str) -> None:
        counters = self.distributor.counters
        counters.rejected[code] += count
        counters.input(INPUT).rejected[code] += count
        self.unreported += count

    def room(self) -> None:
        """The queue has room: connections holding packets offer them again, oldest first."""
        while self.waiting:
            conn = self.waiting[0]
            if not conn.push():
                return
            self.waiting.popleft()
            conn.in_line = False

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
        rejected = self.distributor.counters.input(INPUT).rejected
        return sum(n for code, n in rejected.items() if code != "payload_too_large")

    async def close(self) -> None:
        """Stop listening; own what was gathered if it fits, and say what could not be."""
        if self.ticker is not None:
            self.ticker.cancel()
        if self.tcp_server is not None:
            self.tcp_server.close()
        if self.udp is not None:
            self.udp.close()
        for conn in list(self.connections):
            conn.flush()
            if conn.transport is not None:
                conn.transport.abort()
        if self.udp_protocol is not None:
            self.udp_protocol.flush()
        self.room()
        lost = sum(p.messages for c in self.waiting for p in c.held)
        if lost:
            event(log, "syslog_lost_at_stop", logging.ERROR, messages=lost,
                  reason="the queue stayed full")  # fmt: skip
        if self.tcp_server is not None:
            await self.tcp_server.wait_closed()


def _cannot(kind: str, host: str, port: int, exc: OSError) -> ListenError:
    return ListenError(
        f"cannot listen for syslog on {kind} {host}:{port}: {describe_bind_error(exc)}"
    )
