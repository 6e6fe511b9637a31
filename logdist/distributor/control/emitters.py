"""Emitters that registered with the distributor, their leases, and the relay to their control
APIs.

An emitter registers once and then renews a lease (every `lease / 3` seconds, jittered, and at
once when its own state changes); every packet it sends renews it too. One not heard from for
`lease` seconds is shown as `gone`; one gone for `forget_after` more is forgotten (counted and
logged). Views stay small however many there are: `summary` gives counts by state, totals and
the top few; `page` lists them by id, filtered and paged with an opaque cursor.
"""

from __future__ import annotations

import heapq
import logging
import operator
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from logdist.core import paging
from logdist.core.checks import check_id, control_url
from logdist.core.paging import PAGE_DEFAULT
from logdist.distributor.observe.meter import SAMPLE, ControlMeter
from logdist.distributor.routing.shares import Shares
from logdist.errors import InvalidRequest, PeerUnavailable, UnknownEmitter
from logdist.events import event
from logdist.formats.packet import Packet

log = logging.getLogger("logdist.emitters")

STATES = ("active", "paused", "gone")
# How a page of emitters is ordered: by id, or the most refused 429 first.
SORTS = ("id", "throttled")
# Up to this many emitters, /status lists every one; past it, only the top few.
STATUS_ALL = 20
STATUS_TOP = 5
# Distinct emitters tallied before `saw` settles at once (else the sweeper does, every few s).
SETTLE_AT = 50_000


@dataclass(slots=True)
class EmitterInfo:
    id: str
    url: str
    registered_at: float
    last_seen: float
    # The emitter's own /metrics as last heard (its registration, a renewal, a relayed command).
    metrics: dict[str, Any] | None = None
    # What its control calls present (it gave it when registering); never shown or logged.
    secret: str | None = None
    # What the distributor itself counted of its packets.
    received_packets: int = 0
    received_messages: int = 0
    # From `metrics`, read once when they arrive (the summary scans every emitter).
    paused: bool = False
    rps: float = 0.0
    buffer_len: float = 0.0

    def heard(self, metrics: dict[str, Any]) -> None:
        self.metrics = metrics
        self.paused = bool(metrics.get("paused"))
        self.rps = _number(metrics, "rps")
        self.buffer_len = _number(metrics, "buffer_len")

    def state(self, now: float, lease: float) -> str:
        if now - self.last_seen > lease:
            return "gone"
        return "paused" if self.paused else "active"

    def to_json(self, now: float, lease: float, shares: Shares | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "state": self.state(now, lease),
            "last_seen_ago": round(now - self.last_seen, 3),
            "received_packets": self.received_packets,
            "received_messages": self.received_messages,
            # What it holds of the distributor now, and its requests refused past its share.
            "holding": shares.holding.get(self.id, 0) if shares is not None else 0,
            "share": shares.share(self.id) if shares is not None else 0.0,
            "throttled": shares.throttled.get(self.id, 0) if shares is not None else 0,
            "metrics": self.metrics,
        }


def _number(metrics: dict[str, Any] | None, key: str) -> float:
    value = metrics.get(key) if metrics else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


class EmitterDirectory:
    def __init__(
        self,
        now: Callable[[], float],
        networks: tuple[str, ...] = (),
        lease: float = 60.0,
        forget_after: float = 600.0,
        meter: ControlMeter | None = None,
    ) -> None:
        self._now = now
        self.meter = meter or ControlMeter()
        # Who holds what and who was throttled (the dispatcher's; set by the distributor).
        self.shares: Shares | None = None
        # Where a control URL may point besides the registering peer (see checks.control_url).
        self.networks = networks
        self.lease = lease
        self.forget_after = forget_after
        self._emitters: dict[str, EmitterInfo] = {}
        self.registrations = 0
        self.forgotten = 0
        # Packets received from registered emitters, all told.
        self.received_packets = 0
        self._calls = 0  # of saw: one in SAMPLE is timed
        # Packets by emitter since the last `settle`, their messages beyond one a packet, and
        # when the latest came.
        self._seen_packets: Counter[str | None] = Counter()
        self._seen_extra: Counter[str | None] = Counter()
        self._seen_at = 0.0
        # The summary's scan of every emitter, kept until something it counted changes: an
        # emitter registers, reports new metrics, is forgotten, comes back from gone, or the
        # time comes when the least recently seen one would turn gone (`_summary_until`).
        self._summary: dict[str, Any] | None = None
        self._summary_until = 0.0
        self._summary_at = 0.0
        self._sorted: list[str] | None = None

    def __iter__(self) -> Any:
        self.settle()
        return iter(list(self._emitters.values()))

    def __len__(self) -> int:
        return len(self._emitters)

    @property
    def renew_every(self) -> float:
        return self.lease / 3

    def register(
        self,
        eid: object,
        url: object,
        metrics: object = None,
        peer: str | None = None,
        secret: object = None,
    ) -> EmitterInfo:
        """Record (or renew) emitter `eid` whose control API is at `url`, registered from
        address `peer`, whose control calls present `secret`; a URL the distributor may not
        call is a 422."""
        eid = check_id("emitter", eid)
        secret = check_secret(secret)
        url = control_url(url, peer, self.networks).rstrip("/")
        now = self._now()
        info = self._emitters.get(eid)
        if info is None or info.url != url:
            if info is None:
                self._sorted = None
            info = self._emitters[eid] = EmitterInfo(eid, url, now, now)
        info.last_seen = now
        info.secret = secret
        self.registrations += 1
        if isinstance(metrics, dict):
            info.heard(metrics)
        self._summary = None
        return info

    def reported(self, info: EmitterInfo, metrics: dict[str, Any]) -> None:
        """`info`'s emitter answered a relayed command or query with these metrics."""
        info.heard(metrics)
        self._summary = None

    def saw(self, packets: Iterable[Packet]) -> None:
        """Packets were accepted: each renews its emitter's lease, if it registered.

        Tallied per emitter at C speed (Counter.update over a run's emitter list) and applied
        to the emitters (their `last_seen`, their counts) by `settle`: before any view reads
        them, and every few seconds by the sweeper. An emitter sending once a second then
        costs one Python-level update every few seconds, not one per packet.
        """
        if not self._emitters:
            return
        self._calls += 1
        if self._calls % SAMPLE:
            self._tally(packets)
            return
        started = time.thread_time()
        self._tally(packets)
        self.meter.tally += SAMPLE * (time.thread_time() - started)

    def _tally(self, packets: Iterable[Packet]) -> None:
        seen, extra = self._seen_packets, self._seen_extra
        for p in packets:
            if p.emitters is not None and p.counts is not None:
                # A run from several emitters: each of its packets for its own.
                seen.update(p.emitters)
                if p.messages != p.count:  # not a message each
                    for eid, n in zip(p.emitters, p.counts, strict=True):
                        if n > 1:
                            extra[eid] += n - 1
            else:
                seen[p.emitter] += p.count
                if p.messages != p.count:
                    extra[p.emitter] += p.messages - p.count
        self._seen_at = self._now()
        if len(seen) > SETTLE_AT:  # packets naming ever new emitters: settle, stay bounded
            self.settle()

    def settle(self) -> None:
        """Apply the packets tallied since the last time: each emitter they came from was
        seen when the latest of them was accepted."""
        seen, extra = self._seen_packets, self._seen_extra
        if not seen:
            return
        started = time.thread_time()
        emitters = self._emitters
        now = self._seen_at
        back = now - self.lease
        received = 0
        gone = False
        for eid, n in seen.items():
            info = emitters.get(eid) if eid is not None else None
            if info is not None:
                gone = gone or info.last_seen < back
                info.last_seen = max(info.last_seen, now)
                info.received_packets += n
                info.received_messages += n + extra.get(eid, 0)
                received += n
        seen.clear()
        extra.clear()
        if gone:
            self._summary = None  # one came back: the counts by state changed
        self.received_packets += received
        self.meter.leases += time.thread_time() - started

    def sweep(self) -> int:
        """Forget emitters gone for `forget_after` seconds past their lease; how many."""
        with self.meter.timed("leases"):
            return self._sweep()

    def _sweep(self) -> int:
        self.settle()
        cutoff = self._now() - self.lease - self.forget_after
        old = [eid for eid, info in self._emitters.items() if info.last_seen < cutoff]
        for eid in old:
            info = self._emitters.pop(eid)
            self.received_packets -= info.received_packets
        if old:
            self._sorted = None
            self._summary = None
            self.forgotten += len(old)
            event(
                log,
                "emitters_forgotten",
                count=len(old),
                ids=",".join(old[:5]) + (",..." if len(old) > 5 else ""),
                remaining=len(self._emitters),
            )
        return len(old)

    def get(self, eid: str) -> EmitterInfo:
        self.settle()
        try:
            return self._emitters[eid]
        except KeyError:
            raise UnknownEmitter(
                f"no emitter {eid!r} has registered (or it was forgotten)",
                {"known": len(self._emitters)},
            ) from None

    # -- views ----------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Counts by state, totals and the top few by rate and by buffer. The scan of every
        emitter behind them is redone only when one of them may have changed (and at most
        once a second), so a fleet sending steadily costs the views nothing per emitter.
        Packets count here once settled: within the sweeper's few seconds."""
        now = self._now()
        cached = self._summary
        if cached is None or (now >= self._summary_until and now - self._summary_at >= 1.0):
            cached = self._summary = self._scan(now)
        return {
            **cached,
            "total": len(self._emitters),
            "forgotten": self.forgotten,
            "received_packets": self.received_packets,
            "registrations": self.registrations,
        }

    def _scan(self, now: float) -> dict[str, Any]:
        lease = self.lease
        back = now - lease
        live = [info for info in self._emitters.values() if info.last_seen >= back]
        paused = sum(info.paused for info in live)
        # No emitter seen since can turn gone before the least recently seen one does.
        self._summary_until = min((info.last_seen for info in live), default=now) + lease
        self._summary_at = now
        counts = {
            "active": len(live) - paused,
            "paused": paused,
            "gone": len(self._emitters) - len(live),
        }
        rps = sum(info.rps for info in live if not info.paused)
        buffered = sum(info.buffer_len for info in live)

        def top(key: str) -> list[dict[str, Any]]:
            best = heapq.nlargest(STATUS_TOP, live, key=operator.attrgetter(key))
            return [{"id": i.id, key: getattr(i, key)} for i in best if getattr(i, key) > 0]

        return {
            **counts,
            "rps": round(rps, 3),
            "buffered": int(buffered),
            "lease": lease,
            "top_by_rate": top("rps"),
            "top_by_buffer": top("buffer_len"),
        }

    def status_rows(self) -> list[dict[str, Any]]:
        """Every emitter while there are few; past STATUS_ALL, none (the summary's top lists
        and `page` say the rest)."""
        return self.to_json() if len(self._emitters) <= STATUS_ALL else []

    def ids(self) -> list[str]:
        if self._sorted is None:
            self._sorted = sorted(self._emitters)
        return self._sorted

    def page(
        self,
        q: str | None = None,
        state: str | None = None,
        limit: int = PAGE_DEFAULT,
        cursor: str | None = None,
        sort: str = "id",
    ) -> dict[str, Any]:
        """Emitters by id (or the most throttled first, `sort="throttled"`): those whose id
        contains `q` and in `state`, `limit` after `cursor`."""
        if state is not None and state not in STATES:
            raise InvalidRequest(
                f"state must be one of {', '.join(STATES)}, got {state!r}", {"field": "state"}
            )
        if sort not in SORTS:
            raise InvalidRequest(
                f"sort must be one of {', '.join(SORTS)}, got {sort!r}", {"field": "sort"}
            )
        self.settle()
        now, lease, emitters = self._now(), self.lease, self._emitters

        def row(eid: str) -> dict[str, Any] | None:
            info = emitters.get(eid)
            if info is None or (q and q not in eid):
                return None
            if state is not None and info.state(now, lease) != state:
                return None
            return info.to_json(now, lease, self.shares)

        if sort == "id":
            rows, after = paging.page(self.ids(), row, limit, cursor)
        else:
            throttled = self.shares.throttled if self.shares is not None else Counter()

            def most(eid: str) -> tuple[int, str]:
                return (-throttled.get(eid, 0), eid)

            ids = sorted(emitters, key=most)
            rows, after = paging.page(ids, row, limit, cursor, key=most)
        return paging.answer("emitters", rows, len(emitters), after)

    def to_json(self) -> list[dict[str, Any]]:
        self.settle()
        now = self._now()
        return [e.to_json(now, self.lease, self.shares) for e in self._emitters.values()]


def check_secret(value: object) -> str | None:
    """An emitter's control token as it registered it: a string of 8-256 printable characters
    (None: an emitter that asks none)."""
    if value is None:
        return None
    if not isinstance(value, str) or not 8 <= len(value) <= 256 or not value.isprintable():
        raise InvalidRequest("secret must be a string of 8-256 printable characters")
    return value


async def relay(
    session: aiohttp.ClientSession,
    info: EmitterInfo,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    timeout: float = 3.0,
) -> tuple[int, Any]:
    """Call an emitter's control API; its own status and JSON come back unchanged."""
    url = f"{info.url}{path}"
    headers = {"Content-Type": "application/json"}
    if info.secret is not None:
        headers["Authorization"] = f"Bearer {info.secret}"
    try:
        async with session.request(
            method,
            url,
            data=orjson.dumps(body) if body is not None else None,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            raw = await resp.read()
            try:
                return resp.status, orjson.loads(raw)
            except orjson.JSONDecodeError:
                return 502, {
                    "error": f"emitter {info.id} answered {resp.status} without JSON",
                    "code": "peer_unavailable",
                }
    except (TimeoutError, aiohttp.ClientError) as exc:
        from logdist.net.web import describe_error

        raise PeerUnavailable(
            f"emitter {info.id} at {info.url} did not answer: {describe_error(exc)}"
        ) from None
