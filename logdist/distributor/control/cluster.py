"""Cluster mode: distributors that share one queue on NATS JetStream (`--cluster URL,...`).

Accept = replicated: a request's packets (a run, or each packet) are published to the
stream on their emitter's subject (`control.publisher`), with a message id made of their
packet ids (a request sent again is deduplicated), and the 202 waits for the publish
acknowledgement: the packets are on a quorum of servers. An emitter past its fair share of
the stream is a 429 (`routing.stream_shares`); a full stream, a lost quorum or no server at
all is a 503 with Retry-After.

Route = pull what you can send: every replica fetches from the same durable pull consumers
on the work-queue stream, one a lane of emitters (`control.consumers`), only as many
messages as its queue has room for, routes them with its own
picker, and acknowledges a stream message once every packet in it has an analyzer's 2xx
(or was set aside as a dead letter). What a dead replica fetched is redelivered to the others
after the ack wait; messages held long are kept alive with in-progress signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.js.api import (
    DiscardPolicy,
    RetentionPolicy,
    StreamConfig,
)

from logdist.config import ClusterConfig
from logdist.core.backoff import Backoff
from logdist.distributor.control.bucket import ControlPlane, Row, Watcher
from logdist.distributor.control.consumers import Consumers
from logdist.distributor.control.messages import packets_of
from logdist.distributor.control.publisher import SUBJECT, Publisher, emitter_of, subject_of
from logdist.distributor.routing.stream_shares import (
    READ_UNDER_PRESSURE,
    StreamShares,
    server_max_bytes,
)
from logdist.errors import Backpressure, LogdistError
from logdist.events import event
from logdist.formats.packet import Packet, total

log = logging.getLogger("logdist.cluster")

# Seconds a JetStream API call may take.
JS_TIMEOUT = 2.0
# Seconds between readings of the stream's and the consumers' figures (the stream's more
# often while it is filling: stream_shares.READ_UNDER_PRESSURE).
OBSERVE = 2.0
# Joining the cluster again after a failure: from 0.2 s, doubling, up to 5 s, jittered (the
# replicas that lost the servers together do not come back together).
JOIN_BACKOFF = Backoff(base=0.2, cap=5.0)


@dataclass
class _Held:
    """A fetched stream message and how many of its packets are not settled yet."""

    msg: Any
    left: int
    since: float


class Cluster:
    def __init__(
        self,
        cfg: ClusterConfig,
        replica: str,
        room: Callable[[], int],
        enqueue: Callable[[list[Packet]], None],
        retry_after: float,
        url: str = "",
        tls: ssl.SSLContext | None = None,
        above: float = 0.0,
        refused: Callable[..., None] = lambda emitter, **why: None,
    ) -> None:
        self.cfg = cfg
        self.tls = tls  # for tls:// servers
        self.replica = replica
        # Where this replica listens (its heartbeat says so): the app sets the bound address.
        self.where: Callable[[], str] = lambda: url
        self.control = ControlPlane(f"{cfg.stream}_CONTROL", cfg.replicas, replica, retry_after)
        # Set before start: the config's analyzers (the first replica's go in the bucket).
        self.seed: list[Row] = []
        self.watcher: Watcher | None = None
        # The stream's figures and the lanes' consumers' (summed), read by _observe.
        self.stream_state: dict[str, Any] = {}
        self._room = room
        self._enqueue = enqueue
        self.retry_after = retry_after
        self._nc: Any = None
        self._js: Any = None
        self._held: dict[str, _Held] = {}  # packet id -> its stream message
        self._messages = 0  # stream messages fetched and not acknowledged
        self._task: asyncio.Task[None] | None = None
        self.fetched = 0
        self.acked = 0
        # Fair admission to the stream (`above` of its max_bytes; 0: off), fed by _observe.
        self.shares = StreamShares(above, cfg.max_bytes, retry_after, _keyed, refused, SUBJECT)
        self.consumers = Consumers(cfg.stream, cfg.ack_wait, self._fetch_room, self._take)
        self.publisher = Publisher(
            cfg.stream, retry_after, _said, self.shares.published, self.shares.wants_counts
        )
        self.ready = False

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                await self._connect()
                assert self.watcher is not None
                watch = await self.control.open(self._js, self.seed, self.watcher)
                await self.consumers.open(self._js)
                break
            except (OSError, nats.errors.Error, TimeoutError) as exc:
                if self._nc is not None:
                    await self._nc.close()
                    self._nc = self._js = None
                attempt += 1
                delay = JOIN_BACKOFF.delay(attempt, random.random)
                event(log, "cluster_not_ready", logging.WARNING, error=_said(exc), retry=delay)
                await asyncio.sleep(delay)
        self.ready = True
        event(
            log,
            "cluster_joined",
            replica=self.replica,
            servers=",".join(self.cfg.servers),
            stream=self.cfg.stream,
        )
        await asyncio.gather(
            self.consumers.feed(),
            self._keep_alive(),
            self.control.follow(watch),
            self.control.heartbeat(self._heartbeat),
            self._observe(),
        )

    def _heartbeat(self) -> Row:
        return {
            "url": self.where(),
            "in_flight": self._messages,
            "fetched": self.fetched,
            "acked": self.acked,
        }

    async def _observe(self) -> None:
        """Read the stream's depth (with what each emitter holds, while it is filling: the
        fair shares) and, every OBSERVE seconds, the consumers' pending and redelivered."""
        last = -OBSERVE
        while True:
            now = time.monotonic()
            counts = self.shares.wants_counts()
            due = now - last >= OBSERVE
            if counts or self.shares.filling() or due:
                try:
                    await self._read(counts, due)
                except (nats.errors.Error, TimeoutError, OSError) as exc:
                    self.stream_state = {"error": _said(exc)}
                if due:
                    last = now
            await asyncio.sleep(READ_UNDER_PRESSURE)

    async def _read(self, counts: bool, consumers: bool) -> None:
        stream = await self._js.stream_info(
            self.cfg.stream, subjects_filter=">" if counts else None
        )
        subjects = dict(stream.state.subjects or {}) if counts else None
        shared = subjects.pop(SUBJECT, 0) if subjects is not None else 0
        self.shares.read(stream.state.messages, stream.state.bytes, subjects, shared)
        if consumers or "error" in self.stream_state:
            self.stream_state.pop("error", None)
            self.stream_state.update(await self.consumers.info(self._js))
        self.stream_state.update(
            messages=stream.state.messages,
            bytes=stream.state.bytes,
            max_bytes=self.cfg.max_bytes,
        )

    async def _connect(self) -> None:
        self._nc = await nats.connect(
            list(self.cfg.servers),
            name=f"logdist-{self.replica}",
            tls=self.tls if any(s.startswith("tls://") for s in self.cfg.servers) else None,
            connect_timeout=2,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
        )
        # JetStream API calls (stream and bucket set-up, the control bucket) give up after
        # JS_TIMEOUT: a cluster electing its leader is asked again sooner, and an admin call
        # is answered 503 rather than hang.
        self._js = self._nc.jetstream(timeout=JS_TIMEOUT)
        self.publisher.js = self._js
        self.publisher.max_payload = int(self._nc.max_payload)
        stream = StreamConfig(
            name=self.cfg.stream,
            subjects=[SUBJECT, f"{SUBJECT}.*.*"],
            retention=RetentionPolicy.WORK_QUEUE,
            discard=DiscardPolicy.NEW,
            # Above what logdist fills it to itself (StreamShares.check_room): the servers
            # can drop a full stream's oldest messages despite DiscardPolicy.NEW.
            max_bytes=server_max_bytes(self.cfg.max_bytes),
            num_replicas=self.cfg.replicas,
            duplicate_window=120.0,
        )
        try:
            await self._js.add_stream(stream)
        except nats.js.errors.BadRequestError:
            await self._js.update_stream(stream)  # made by another replica, or changed

    def stop_fetching(self) -> None:
        """Fetch nothing more (the distributor is stopping; what it holds drains)."""
        if self._task is not None:
            self._task.cancel()

    async def close(self) -> None:
        """Stop fetching; what was fetched and not settled goes back to the stream now."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for held in self._held_messages():
            with contextlib.suppress(nats.errors.Error, OSError):
                await held.msg.nak()
        self._held.clear()
        await self.control.leave()
        if self._nc is not None:
            # With the servers gone the client would keep trying to flush: bounded.
            with contextlib.suppress(TimeoutError, nats.errors.Error, OSError):
                async with asyncio.timeout(2.0):
                    await self._nc.close()

    # -- accepting ----------------------------------------------------------------------

    def publish(self, packets: list[Packet]) -> Awaitable[None]:
        """What to await before the 202: every message's publish acknowledgement (429 past
        the emitter's fair share of the stream; 503 before the servers are reached, or when
        the stream is full)."""
        if self._js is None or not self.ready:
            raise Backpressure(
                "the cluster's NATS servers are not reachable yet; retry later",
                retry_after=self.retry_after,
            )
        self.shares.check_room(packets)
        self.shares.check(packets)
        return self.publisher.publish(packets)

    # -- routing ------------------------------------------------------------------------

    def room(self) -> None:
        """The local queue has room again (the dispatcher says so)."""
        self.consumers.wake()

    def _fetch_room(self) -> int:
        """Stream messages this replica may fetch now."""
        return min(self._room(), self.cfg.max_in_flight - self._messages)

    def _take(self, msg: Any, now: float) -> None:
        try:
            packets = packets_of(msg.data, msg.headers)
        except zlib.error as exc:
            event(log, "cluster_message_unreadable", logging.ERROR, error=f"deflate: {exc}")
            asyncio.ensure_future(msg.term())
            return
        except LogdistError as exc:  # not a packet: nothing will ever route it
            event(log, "cluster_message_unreadable", logging.ERROR, error=exc.message)
            asyncio.ensure_future(msg.term())
            return
        held = _Held(msg, total(packets), now)
        for p in packets:
            for pid in p.ids or [p.id]:
                self._held[pid] = held
        self._messages += 1
        self.fetched += 1
        self._enqueue(packets)

    def split(self, packet: Packet, parts: list[Packet]) -> None:
        """`packet` is now `parts`: its stream message is acknowledged once all are settled."""
        held = self._held.pop(packet.id, None)
        if held is not None:
            held.left += len(parts) - 1
            self._held.update((part.id, held) for part in parts)

    def settled(self, packets: list[Packet]) -> None:
        """`packets` were delivered (or set aside): acknowledge the stream messages that have
        nothing left unsettled."""
        for p in packets:
            for pid in p.ids or [p.id]:
                held = self._held.pop(pid, None)
                if held is None:
                    continue
                held.left -= 1
                if held.left == 0:
                    self._messages -= 1
                    self.acked += 1
                    asyncio.ensure_future(_ack(held.msg))
                    self.consumers.wake()

    async def _keep_alive(self) -> None:
        """Tell JetStream that messages held long are still being worked on."""
        while True:
            await asyncio.sleep(max(0.5, self.cfg.ack_wait / 3))
            old = time.monotonic() - self.cfg.ack_wait / 3
            for held in self._held_messages():
                if held.since < old:
                    held.since = time.monotonic()
                    with contextlib.suppress(nats.errors.Error, OSError):
                        await held.msg.in_progress()

    def _held_messages(self) -> list[_Held]:
        """Each fetched, unacknowledged message once (`_held` maps every packet to its own)."""
        return list({id(h): h for h in self._held.values()}.values())

    def summary(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "servers": list(self.cfg.servers),
            "stream": self.cfg.stream,
            "ready": self.ready,
            "in_flight": self._messages,
            "fetched": self.fetched,
            "acked": self.acked,
            "publish_failures": self.publisher.failures,
            "published": self.publisher.published,
            "published_bytes": self.publisher.bytes_in,
            "stored_bytes": self.publisher.bytes_out,
            "fairness": self.shares.to_json(),
            "stream_state": self.stream_state,
            "replicas": self.control.replicas_json(),
            "control": self.control.summary(),
        }


def _keyed(packet: Packet) -> tuple[str, str | None]:
    """A packet's subject and emitter."""
    emitter = emitter_of(packet)
    return subject_of(emitter), emitter


async def _ack(msg: Any) -> None:
    try:
        await msg.ack()
    except (nats.errors.Error, OSError) as exc:
        # Redelivered after the ack wait; analyzers drop it as a duplicate.
        event(log, "cluster_ack_failed", logging.WARNING, error=repr(exc))


def _said(exc: BaseException) -> str:
    description = getattr(exc, "description", None)
    if isinstance(description, str) and description:
        return description  # JetStream's own words ("replicas > 1 not supported ...")
    text = str(exc) or type(exc).__name__
    return text.removeprefix("nats: ")
