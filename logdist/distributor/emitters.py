"""Emitters that registered with the distributor, and the relay to their control APIs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from logdist.core.checks import check_id, control_url
from logdist.errors import PeerUnavailable, UnknownEmitter


@dataclass
class EmitterInfo:
    id: str
    url: str
    registered_at: float
    last_seen: float
    # The emitter's own /metrics as last heard (with its registration, or a relayed command).
    metrics: dict[str, Any] | None = None

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "last_seen_ago": round(now - self.last_seen, 3),
            "metrics": self.metrics,
        }


class EmitterDirectory:
    def __init__(self, now: Callable[[], float], networks: tuple[str, ...] = ()) -> None:
        self._now = now
        # Where a control URL may point besides the registering peer (see checks.control_url).
        self.networks = networks
        self._emitters: dict[str, EmitterInfo] = {}

    def __iter__(self) -> Any:
        return iter(list(self._emitters.values()))

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
            info = self._emitters[eid] = EmitterInfo(eid, url, now, now)
        info.last_seen = now
        if isinstance(metrics, dict):
            info.metrics = metrics
        return info

    def get(self, eid: str) -> EmitterInfo:
        try:
            return self._emitters[eid]
        except KeyError:
            raise UnknownEmitter(
                f"no emitter {eid!r} has registered", {"known": sorted(self._emitters)}
            ) from None

    def to_json(self) -> list[dict[str, Any]]:
        now = self._now()
        return [e.to_json(now) for e in self._emitters.values()]


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
