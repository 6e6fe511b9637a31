"""Cluster mode's publishing: accepted packets to the stream.

While the stream has room, every packet goes on `logdist.packets`. While it is filling
(`keyed`: the fair shares need to know who holds what), each emitter's go on a subject of
their own, `logdist.packets.<lane>.<hash of its id>`, whose message count the servers report
(`routing.stream_shares`). Publishing is grouped, as a database groups commits: at most one
message of a subject is in flight, and the packets of that subject that arrive meanwhile go
together as its next message (up to max_payload) — a publish costs the same for one packet
as for hundreds. Subjects take turns, at most PUBLISHING messages in flight in all. (A
message an emitter: on 2 cores, one replica publishes about 5,000 single-packet requests/s
of many emitters, against 8,700 on one subject — a cost paid only while the stream fills.)
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats.errors

from logdist.distributor.control.messages import message_of
from logdist.distributor.routing.shares import one_emitter_each
from logdist.errors import Backpressure, PayloadTooLarge
from logdist.formats.packet import Packet, parse_batch

# The stream's subjects: this, and one per emitter below it, in 16 lanes.
SUBJECT = "logdist.packets"
LANES = "0123456789abcdef"
# Seconds to publish one message before the request is answered 503.
PUBLISH_TIMEOUT = 5.0
# Stream messages being published at once, each of a different subject (one at a time of a
# subject groups most: 6,449 requests/s, 16 packets a message, against 5,362 and 10 with two).
PUBLISHING = 16
# Bytes of a message's headers (its Nats-Msg-Id) kept free below the servers' max_payload.
HEADROOM = 1024


def subject_of(emitter: str | None) -> str:
    """The subject an emitter's packets are published on while the stream fills: its lane
    (`control.consumers`), the first hex digit of a hash of its id, then the hash (ids may
    hold dots, which NATS reads as token separators: a hash of the id, 64 bits, names it)."""
    digest = hashlib.blake2b((emitter or "").encode(), digest_size=8).hexdigest()
    return f"{SUBJECT}.{digest[0]}.{digest}"


def stored_size(subject: str, body: bytes, headers: dict[str, str], stream: str) -> int:
    """The bytes a message takes in the stream, as JetStream counts them: its subject, its
    headers (with the Nats-Expected-Stream that publishing adds), its body and 34 more."""
    header_block = 12 + sum(len(k) + len(v) + 4 for k, v in headers.items())
    return (
        34 + len(subject) + header_block + len("Nats-Expected-Stream") + len(stream) + 4 + len(body)
    )


def emitter_of(packet: Packet) -> str | None:
    """Whose a packet is, for its subject (a run of several emitters' packets, published
    while the stream is calm, is its first emitter's)."""
    if packet.emitters:
        return packet.emitters[0]
    return packet.emitter


@dataclass
class Waiter:
    """A request waiting for its packets' publish acknowledgements."""

    left: int
    done: asyncio.Future[None]


class Publisher:
    def __init__(
        self,
        stream: str,
        retry_after: float,
        said: Callable[[BaseException], str],
        published: Callable[[str, int], None],
        keyed: Callable[[], bool] = lambda: False,
    ) -> None:
        self.stream = stream
        self.retry_after = retry_after
        self._said = said
        self._published = published  # (subject, bytes) of each message the stream took
        self._keyed = keyed  # whether each emitter's packets go on a subject of their own
        self.js: Any = None
        self.max_payload = 1 << 20
        # subject -> its packets waiting to be published (a dict's order: the turns)
        self._waiting: dict[str, deque[tuple[Packet, Waiter]]] = {}
        self._in_flight: set[str] = set()
        self._sending: set[asyncio.Task[None]] = set()
        self.published = 0  # stream messages
        self.bytes_in = self.bytes_out = 0  # of the packets published; of their messages
        self.failures = 0

    def limit(self) -> int:
        return self.max_payload - HEADROOM

    def publish(self, packets: list[Packet]) -> Awaitable[None]:
        """What to await before the 202: every message's publish acknowledgement."""
        packets = self.fitting(packets)
        keyed = self._keyed()
        if keyed:
            packets = one_emitter_each(packets)  # each on its own emitter's subject
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = Waiter(len(packets), done)
        for p in packets:
            subject = subject_of(emitter_of(p)) if keyed else SUBJECT
            queue = self._waiting.get(subject)
            if queue is None:
                queue = self._waiting[subject] = deque()
            queue.append((p, waiter))
        self._kick()
        return done

    def fitting(self, packets: list[Packet]) -> list[Packet]:
        """`packets` as messages the servers take: a run larger than their max_payload goes
        as its packets one by one; a packet larger than that alone is refused (413)."""
        limit = self.limit()
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

    def _kick(self) -> None:
        """Publish the next message of each subject in turn that has none in flight."""
        if len(self._in_flight) >= PUBLISHING or not self._waiting:
            return
        limit = self.limit()
        for subject in list(self._waiting):
            if len(self._in_flight) >= PUBLISHING:
                break
            if subject in self._in_flight:
                continue
            queue = self._waiting.pop(subject)
            batch: list[tuple[Packet, Waiter]] = [queue.popleft()]
            size = len(batch[0][0].body) + 1
            while queue and size + len(queue[0][0].body) + 1 <= limit:
                item = queue.popleft()
                batch.append(item)
                size += len(item[0].body) + 1
            if queue:
                self._waiting[subject] = queue  # at the end: the others go first
            self._in_flight.add(subject)
            task = asyncio.get_running_loop().create_task(self._send(subject, batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, subject: str, batch: list[tuple[Packet, Waiter]]) -> None:
        plain, body, headers = message_of([p for p, _ in batch])
        stored = stored_size(subject, body, headers, self.stream)
        self.bytes_in += plain
        self.bytes_out += len(body)
        try:
            await self.js.publish(
                subject, body, timeout=PUBLISH_TIMEOUT, stream=self.stream, headers=headers
            )
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            self.failures += 1
            failure = Backpressure(
                f"the cluster did not take the packets ({self._said(exc)}); retry later",
                retry_after=self.retry_after,
            )
            for _, waiter in batch:
                if not waiter.done.done():
                    waiter.done.set_exception(failure)
        else:
            self.published += 1
            self._published(subject, stored)
            for _, waiter in batch:
                waiter.left -= 1
                if waiter.left == 0 and not waiter.done.done():
                    waiter.done.set_result(None)
        finally:
            self._in_flight.discard(subject)
            self._kick()
