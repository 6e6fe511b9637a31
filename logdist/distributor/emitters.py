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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from logdist.core import paging
from logdist.core.checks import check_id, control_url
from logdist.core.packet import Packet
from logdist.core.paging import PAGE_DEFAULT
from logdist.errors import InvalidRequest, PeerUnavailable, UnknownEmitter
from logdist.log import event

log = logging.getLogger("logdist.emitters")

STATES = ("active", "paused", "gone")
# Up to this many emitters, /status lists every one; past it, only the top few.
STATUS_ALL = 20
STATUS_TOP = 5


@dataclass(slots=True)
class EmitterInfo:
    id: str
    url: str
    registered_at: float
    last_seen: float
    # The emitter's own /metrics as last heard (its registration, a renewal, a relayed command).
    metrics: dict[str, Any] | None = None
    # What the distributor itself counted of its packets.
    received_packets: int = 0
    received_messages: int = 0

    def state(self, now: float, lease: float) -> str:
        if now - self.last_seen > lease:
            return "gone"
        m = self.metrics
        return "paused" if m is not None and m.get("paused") else "active"

    def to_json(self, now: float, lease: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "state": self.state(now, lease),
            "last_seen_ago": round(now - self.last_seen, 3),
            "received_packets": self.received_packets,
            "received_messages": self.received_messages,
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
    ) -> None:
        self._now = now
        # Where a control URL may point besides the registering peer (see checks.control_url).
        self.networks = networks
        self.lease = lease
        self.forget_after = forget_after
        self._emitters: dict[str, EmitterInfo] = {}
        self.registrations = 0
        self.forgotten = 0
        self._summary: tuple[float, dict[str, Any]] | None = None
        self._sorted: list[str] | None = None

    def __iter__(self) -> Any:
        return iter(list(self._emitters.values()))

    def __len__(self) -> int:
        return len(self._emitters)

    @property
    def renew_every(self) -> float:
        return self.lease / 3

    def register(
        self, eid: object, url: object, metrics: object = None, peer: str | None = None
    ) -> EmitterInfo:
        """Record (or renew) emitter `eid` whose control API is at `url`, registered from
        address `peer`; a URL the distributor may not call is a 422."""
        eid = check_id("emitter", eid)
        url = control_url(url, peer, self.networks).rstrip("/")
        now = self._now()
        info = self._emitters.get(eid)
        if info is None or info.url != url:
            if info is None:
                self._sorted = None
            info = self._emitters[eid] = EmitterInfo(eid, url, now, now)
        info.last_seen = now
        self.registrations += 1
        if isinstance(metrics, dict):
            info.metrics = metrics
        return info

    def saw(self, packets: Iterable[Packet]) -> None:
        """Packets from registered emitters were accepted: each renews its emitter's lease."""
        emitters = self._emitters
        if not emitters:
            return
        now = 0.0
        for p in packets:
            info = emitters.get(p.emitter) if p.emitter is not None else None
            if info is not None:
                if not now:
                    now = self._now()
                info.last_seen = now
                info.received_packets += p.count
                info.received_messages += p.messages

    def sweep(self) -> int:
        """Forget emitters gone for `forget_after` seconds past their lease; how many."""
        cutoff = self._now() - self.lease - self.forget_after
        old = [eid for eid, info in self._emitters.items() if info.last_seen < cutoff]
        for eid in old:
            del self._emitters[eid]
        if old:
            self._sorted = None
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
        try:
            return self._emitters[eid]
        except KeyError:
            raise UnknownEmitter(
                f"no emitter {eid!r} has registered (or it was forgotten)",
                {"known": len(self._emitters)},
            ) from None

    # -- views ----------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Counts by state, totals and the top few by rate and by buffer; computed at most
        once a second however many views ask."""
        now = self._now()
        cached = self._summary
        if cached is not None and now - cached[0] < 1.0:
            return cached[1]
        lease = self.lease
        counts = dict.fromkeys(STATES, 0)
        rps = buffered = 0.0
        received = 0
        live: list[EmitterInfo] = []
        for info in self._emitters.values():
            state = info.state(now, lease)
            counts[state] += 1
            received += info.received_packets
            if state != "gone":
                live.append(info)
                m = info.metrics
                if state == "active":
                    rps += _number(m, "rps")
                buffered += _number(m, "buffer_len")

        def top(key: str) -> list[dict[str, Any]]:
            best = heapq.nlargest(STATUS_TOP, live, key=lambda i: _number(i.metrics, key))
            return [
                {"id": i.id, key: _number(i.metrics, key)}
                for i in best
                if _number(i.metrics, key) > 0
            ]

        summary = {
            "total": len(self._emitters),
            **counts,
            "forgotten": self.forgotten,
            "rps": round(rps, 3),
            "buffered": int(buffered),
            "received_packets": received,
            "registrations": self.registrations,
            "lease": lease,
            "top_by_rate": top("rps"),
            "top_by_buffer": top("buffer_len"),
        }
        self._summary = (now, summary)
        return summary

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
    ) -> dict[str, Any]:
        """Emitters by id: those whose id contains `q` and in `state`, `limit` after `cursor`."""
        if state is not None and state not in STATES:
            raise InvalidRequest(
                f"state must be one of {', '.join(STATES)}, got {state!r}", {"field": "state"}
            )
        now, lease, emitters = self._now(), self.lease, self._emitters

        def row(eid: str) -> dict[str, Any] | None:
            info = emitters.get(eid)
            if info is None or (q and q not in eid):
                return None
            if state is not None and info.state(now, lease) != state:
                return None
            return info.to_json(now, lease)

        rows, after = paging.page(self.ids(), row, limit, cursor)
        return {"emitters": rows, "total": len(emitters), "next": after}

    def to_json(self) -> list[dict[str, Any]]:
        now = self._now()
        return [e.to_json(now, self.lease) for e in self._emitters.values()]


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
    try:
        async with session.request(
            method,
            url,
            data=orjson.dumps(body) if body is not None else None,
            headers={"Content-Type": "application/json"},
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
        from logdist.http import describe_error

        raise PeerUnavailable(
            f"emitter {info.id} at {info.url} did not answer: {describe_error(exc)}"
        ) from None
