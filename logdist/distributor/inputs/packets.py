"""The distributor's front door: ingest answered on the lean path (see `logdist.net.fastpath`).

`POST /log-packet` and `POST /log-packets` are validated, spooled and queued inline and the
202 written at once; every other route is aiohttp's. A request that finds the queue full waits
up to `queue_wait` seconds for room, its connection's reading paused, before its 503.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import orjson

from logdist.config import DistributorConfig
from logdist.distributor.inputs.intake import Intake
from logdist.errors import Backpressure, LogdistError, UnsupportedMediaType
from logdist.formats.packet import Packet, packet_ids, parse_batch, parse_one
from logdist.net.answers import content_kind, error, response
from logdist.net.fastpath import Connection, FrontDoor
from logdist.net.web import BODY_IDLE_TIMEOUT

ONE, MANY = 1, 2
INGEST_PATHS = {b"/log-packet": ONE, b"/log-packets": MANY}
# Requests held at once waiting for room; past it a full queue answers 503 at once.
MAX_WAITING = 4096


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
    d: Intake, route: int, ctype: bytes | None, body: bytes
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


@dataclass(eq=False)
class Waiting:
    """An ingest request parsed and waiting for room in the queue; its answer is `entry`."""

    conn: Connection
    entry: list[Any]
    route: int
    packets: list[Packet]
    deadline: float


class Front(FrontDoor):
    """Answers ingest requests, and holds those waiting for room in the queue."""

    def __init__(
        self,
        intake: Intake,
        keepalive_timeout: float = 15.0,
        body_timeout: float = BODY_IDLE_TIMEOUT,
    ) -> None:
        cfg = intake.cfg
        super().__init__(
            INGEST_PATHS,
            {ONE: cfg.max_body_bytes, MANY: cfg.max_batch_bytes},
            cfg.ingest_token.encode() if cfg.ingest_token else None,
            keepalive_timeout,
            body_timeout,
        )
        self.intake = intake
        # Requests that found the queue full, oldest first; each holds its connection's reading.
        self.waiting: deque[Waiting] = deque()
        self.queue_wait = cfg.queue_wait
        intake.on_room(self.room)

    def handle(self, conn: Connection, route: int, ctype: bytes | None, body: bytes) -> None:
        d = self.intake
        packets: list[Packet] = []
        try:
            packets = parse(route, ctype, body, d.cfg)
            if self.waiting:
                raise d.queue_full()  # others wait already: no overtaking them
            wait = d.accept_now(packets)
        except Backpressure:
            if packets and self.wait_for_room(conn, route, packets):
                return
            raise
        if wait is None:
            conn.answer(response(202, accepted(route, packets), close=conn.close_after))
            return
        entry = conn.defer()
        asyncio.get_running_loop().create_task(self.answer_later(conn, entry, route, packets, wait))

    def rejected(self, exc: LogdistError) -> None:
        self.intake.counters.rejected[exc.code] += 1

    def forget(self, conn: Connection) -> None:
        """`conn` went away: its waiting requests were never acknowledged and are dropped
        unaccepted (the sender still has them)."""
        self.waiting = deque(w for w in self.waiting if w.conn is not conn)

    def wait_for_room(self, conn: Connection, route: int, packets: list[Packet]) -> bool:
        """Hold a request the full queue refused, if waiting is on and the line is not long."""
        if not self.queue_wait or len(self.waiting) >= MAX_WAITING:
            return False
        entry = conn.defer()
        conn.hold()
        self.waiting.append(
            Waiting(conn, entry, route, packets, time.monotonic() + self.queue_wait)
        )
        self.intake.wake()  # routing tells `room` when there is some
        return True

    def room(self) -> None:
        """The queue has room: take waiting requests in arrival order while they fit."""
        d = self.intake
        while self.waiting:
            w = self.waiting[0]
            try:
                wait = d.accept_now(w.packets)
            except Backpressure:
                return
            except LogdistError as exc:
                self.waiting.popleft()
                self.settle(w, None, exc)
                continue
            self.waiting.popleft()
            self.settle(w, wait, None)

    def tick(self, now: float) -> None:
        """Answer 503 to requests that waited `queue_wait` seconds and still do not fit."""
        while self.waiting and self.waiting[0].deadline <= now:
            w = self.waiting.popleft()
            try:
                wait = self.intake.accept_now(w.packets)
            except LogdistError as exc:
                self.settle(w, None, exc)
            else:
                self.settle(w, wait, None)

    def settle(self, w: Waiting, wait: Awaitable[None] | None, exc: LogdistError | None) -> None:
        """A request that waited for room was taken (`wait` first, if any) or refused (`exc`)."""
        w.conn.release()
        if exc is not None:
            self.rejected(exc)
            w.conn.fulfil(w.entry, error(exc, w.entry[2]))
        elif wait is None:
            w.conn.fulfil(w.entry, response(202, accepted(w.route, w.packets), close=w.entry[2]))
        else:
            asyncio.get_running_loop().create_task(
                self.answer_later(w.conn, w.entry, w.route, w.packets, wait)
            )

    async def answer_later(
        self,
        conn: Connection,
        entry: list[Any],
        route: int,
        packets: list[Packet],
        wait: Awaitable[None],
    ) -> None:
        try:
            await wait
        except LogdistError as exc:
            self.rejected(exc)
            data = error(exc, entry[2])
        else:
            data = response(202, accepted(route, packets), close=entry[2])
        conn.fulfil(entry, data)

    async def close(self) -> None:
        """Answer waiting requests 503, then close connections as `FrontDoor.close` does."""
        retry = self.intake.cfg.retry_after
        while self.waiting:
            w = self.waiting.popleft()
            stopping = Backpressure("the distributor is stopping; retry later", retry_after=retry)
            self.settle(w, None, stopping)
        await super().close()
