"""Cluster mode: distributors that share one queue on NATS JetStream (`--cluster URL,...`).

Accept = replicated: a request's packets (a run, or each packet) are published to the
stream, one message each, with a message id made of their packet ids (a request sent again
is deduplicated), and the 202 waits for the publish acknowledgement: the packets are on a
quorum of servers. A full stream, a lost quorum or no server at all is a 503 with Retry-After.

Route = pull what you can send: every replica fetches from one durable pull consumer on the
work-queue stream only as many messages as its queue has room for, routes them with its own
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
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    RetentionPolicy,
    StreamConfig,
)

from logdist.config import ClusterConfig
from logdist.core.backoff import Backoff
from logdist.distributor.control.bucket import ControlPlane, Row, Watcher
from logdist.distributor.control.messages import message_of, packets_of
from logdist.errors import Backpressure, LogdistError, PayloadTooLarge
from logdist.events import event
from logdist.formats.packet import Packet, parse_batch, total

log = logging.getLogger("logdist.cluster")

SUBJECT = "logdist.packets"
CONSUMER = "routers"
# Messages asked for in one fetch at most, and how long a fetch waits for some.
FETCH = 256
FETCH_WAIT = 0.5
# Seconds a JetStream API call may take.
JS_TIMEOUT = 2.0
# Seconds to publish one message before the request is answered 503.
PUBLISH_TIMEOUT = 5.0
# Stream messages being published at once; packets arriving meanwhile are grouped (one
# groups most: 6,449 requests/s, 16 packets a message, against 5,362 and 10 with two).
PUBLISHING = 1
# Bytes of a message's headers (its Nats-Msg-Id) kept free below the servers' max_payload.
HEADROOM = 1024
# Seconds between readings of the stream's and the consumer's figures.
OBSERVE = 2.0
# Joining the cluster again after a failure: from 0.2 s, doubling, up to 5 s, jittered (the
# replicas that lost the servers together do not come back together).
JOIN_BACKOFF = Backoff(base=0.2, cap=5.0)


@dataclass
class _Waiter:
    """A request waiting for its packets' publish acknowledgements."""

    left: int
    done: asyncio.Future[None]


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
        # The stream's and the consumer's figures, read every OBSERVE seconds.
        self.stream_state: dict[str, Any] = {}
        self._room = room
        self._enqueue = enqueue
        self.retry_after = retry_after
        self._nc: Any = None
        self._js: Any = None
        self._held: dict[str, _Held] = {}  # packet id -> its stream message
        self._messages = 0  # stream messages fetched and not acknowledged
        self._task: asyncio.Task[None] | None = None
        self._room_event = asyncio.Event()
        self.fetched = 0
        self.acked = 0
        self.published = 0  # stream messages
        self.bytes_in = self.bytes_out = 0  # of the packets published; of their messages
        self._waiting: deque[tuple[Packet, _Waiter]] = deque()
        self._publishing = 0
        self._sending: set[asyncio.Task[None]] = set()
        self.publish_failures = 0
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
                psub = await self._js.pull_subscribe(
                    SUBJECT,
                    durable=CONSUMER,
                    stream=self.cfg.stream,
                    config=ConsumerConfig(
                        ack_policy=AckPolicy.EXPLICIT,
                        ack_wait=self.cfg.ack_wait,
                        max_ack_pending=-1,
                    ),
                )
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
            self._feed(psub),
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
        """Read the stream's depth and the consumer's pending and redelivered counts."""
        while True:
            try:
                stream = await self._js.stream_info(self.cfg.stream)
                consumer = await self._js.consumer_info(self.cfg.stream, CONSUMER)
            except (nats.errors.Error, TimeoutError, OSError) as exc:
                self.stream_state = {"error": _said(exc)}
            else:
                self.stream_state = {
                    "messages": stream.state.messages,
                    "bytes": stream.state.bytes,
                    "max_bytes": self.cfg.max_bytes,
                    "consumer_pending": consumer.num_pending,
                    "consumer_ack_pending": consumer.num_ack_pending,
                    "redelivered": consumer.num_redelivered,
                }
            await asyncio.sleep(OBSERVE)

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
        stream = StreamConfig(
            name=self.cfg.stream,
            subjects=[SUBJECT],
            retention=RetentionPolicy.WORK_QUEUE,
            discard=DiscardPolicy.NEW,
            max_bytes=self.cfg.max_bytes,
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
        """What to await before the 202: every message's publish acknowledgement."""
        if self._js is None or not self.ready:
            raise Backpressure(
                "the cluster's NATS servers are not reachable yet; retry later",
                retry_after=self.retry_after,
            )
        return self._publish(self._fitting(packets))

    def _fitting(self, packets: list[Packet]) -> list[Packet]:
        """`packets` as messages the servers take: a run larger than their max_payload goes
        as its packets one by one; a packet larger than that alone is refused (413)."""
        limit = int(self._nc.max_payload) - HEADROOM
        if all(len(p.body) <= limit for p in packets):
            return packets
        out: list[Packet] = []
        for p in packets:
            if len(p.body) > limit and p.ids is not None:
                out.extend(parse_batch(p.body, ndjson=True))
            else:
                out.append(p)
        for p in out:
            if len(p.body) > limit:
                raise PayloadTooLarge(
                    f"packet {p.id} is {len(p.body)} bytes; the cluster's NATS servers take"
                    f" messages of up to {limit} (raise their max_payload)"
                )
        return out

    def _publish(self, packets: list[Packet]) -> Awaitable[None]:
        """Group publishing: at most PUBLISHING stream messages are in flight; packets of the
        requests that arrive meanwhile go together as one message (up to max_payload), as a
        database groups commits: a publish costs the same for one packet as for hundreds."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(len(packets), done)
        self._waiting.extend((p, waiter) for p in packets)
        self._kick()
        return done

    def _kick(self) -> None:
        limit = int(self._nc.max_payload) - HEADROOM
        while self._waiting and self._publishing < PUBLISHING:
            batch: list[tuple[Packet, _Waiter]] = []
            size = 0
            while self._waiting and size + len(self._waiting[0][0].body) + 1 <= limit:
                item = self._waiting.popleft()
                batch.append(item)
                size += len(item[0].body) + 1
            if not batch:  # cannot happen: _fitting keeps every packet under the limit
                batch.append(self._waiting.popleft())
            self._publishing += 1
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[Packet, _Waiter]]) -> None:
        plain, body, headers = message_of([p for p, _ in batch])
        self.bytes_in += plain
        self.bytes_out += len(body)
        try:
            await self._js.publish(
                SUBJECT, body, timeout=PUBLISH_TIMEOUT, stream=self.cfg.stream, headers=headers
            )
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            self.publish_failures += 1
            failure = Backpressure(
                f"the cluster did not take the packets ({_said(exc)}); retry later",
                retry_after=self.retry_after,
            )
            for _, waiter in batch:
                if not waiter.done.done():
                    waiter.done.set_exception(failure)
        else:
            self.published += 1
            for _, waiter in batch:
                waiter.left -= 1
                if waiter.left == 0 and not waiter.done.done():
                    waiter.done.set_result(None)
        finally:
            self._publishing -= 1
            self._kick()

    # -- routing ------------------------------------------------------------------------

    def room(self) -> None:
        """The local queue has room again (the dispatcher says so)."""
        self._room_event.set()

    async def _feed(self, psub: Any) -> None:
        while True:
            room = min(self._room(), self.cfg.max_in_flight - self._messages)
            if room <= 0:
                self._room_event.clear()
                await self._room_event.wait()
                continue
            try:
                msgs = await psub.fetch(min(room, FETCH), timeout=FETCH_WAIT)
            except nats.errors.TimeoutError:
                continue
            except (nats.errors.Error, OSError) as exc:
                event(log, "cluster_fetch_failed", logging.WARNING, error=repr(exc))
                await asyncio.sleep(0.5)
                continue
            now = time.monotonic()
            for msg in msgs:
                self._take(msg, now)

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
                    self._room_event.set()

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
            "publish_failures": self.publish_failures,
            "published": self.published,
            "published_bytes": self.bytes_in,
            "stored_bytes": self.bytes_out,
            "stream_state": self.stream_state,
            "replicas": self.control.replicas_json(),
            "control": self.control.summary(),
        }


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
