"""Per-emitter rate limits, as Loki's per-tenant ingestion limits: a token bucket of messages
for each emitter a limit covers, refilled at its rate up to its burst. A request whose
messages the bucket does not hold is answered 429 with Retry-After (when it will) and nothing
of it is taken; one larger than the burst passes when the bucket is full, and the bucket
goes into debt for the rest, so no request is too large to ever pass.

Which limit an emitter has, first found: one set at runtime (`ctl limit`) for its id, one
configured for its id, the longest id prefix (`web-*`) set at runtime or configured, the
default (`--emitter-rate`). A rate of 0 is no limit (so `ctl limit web-7 0` exempts one
emitter from the default). Runtime limits are kept in the state dir's `limits.json` when
there is one.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from logdist.config.tables import EmitterLimit, LimitsConfig, emitter_limit
from logdist.core.ratelimit import TokenBucket
from logdist.distributor.storage.files import replace_file
from logdist.errors import ConfigError, InvalidRequest, NotFound, StateWriteFailed, Throttled
from logdist.formats.packet import Packet

log = logging.getLogger("logdist.distributor")

# Buckets kept past this many are pruned of those that have refilled (as good as new).
PRUNE_AT = 20_000


def burst_of(limit: EmitterLimit) -> float:
    return limit.burst if limit.burst is not None else max(1.0, limit.rate)


def messages_by_emitter(packets: list[Packet]) -> Counter[str | None]:
    counts: Counter[str | None] = Counter()
    for p in packets:
        if p.emitters is not None and p.counts is not None:
            for emitter, n in zip(p.emitters, p.counts, strict=True):
                counts[emitter] += n
        else:
            counts[p.emitter] += p.messages
    return counts


class Limits:
    def __init__(
        self,
        cfg: LimitsConfig,
        state_dir: str | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.default = EmitterLimit("*", cfg.rate, cfg.burst) if cfg.rate else None
        self.configured = {limit.pattern: limit for limit in cfg.emitters}
        self.runtime: dict[str, EmitterLimit] = {}
        self.path = Path(state_dir) / "limits.json" if state_dir else None
        self._now = now
        # emitter -> its limit and bucket (of messages), or None when no limit covers it.
        self.buckets: dict[str | None, tuple[EmitterLimit, TokenBucket] | None] = {}
        self._prune_at = PRUNE_AT
        if self.path is not None:
            self.runtime = load(self.path)
        self.active = self._any()

    def _any(self) -> bool:
        return any(
            limit.rate for limit in [*self.runtime.values(), *self.configured.values()]
        ) or bool(self.default)

    # -- which limit -----------------------------------------------------------------------

    def limit_for(self, emitter: str | None) -> EmitterLimit | None:
        """The limit that covers `emitter` (None: none, or a rate of 0)."""
        eid = emitter or ""
        found = self.runtime.get(eid) or self.configured.get(eid)
        if found is None:
            best = -1
            for table in (self.runtime, self.configured):
                for pattern, limit in table.items():
                    if pattern.endswith("*") and len(pattern) > best and limit.matches(eid):
                        found, best = limit, len(pattern)
        found = found or self.default
        return found if found is not None and found.rate else None

    def _bucket(self, emitter: str | None) -> tuple[EmitterLimit, TokenBucket] | None:
        try:
            return self.buckets[emitter]
        except KeyError:
            pass
        if len(self.buckets) >= self._prune_at:
            self._prune()
        limit = self.limit_for(emitter)
        found = None
        if limit is not None:
            bucket = TokenBucket(limit.rate, now=self._now, burst=burst_of(limit), full=True)
            found = (limit, bucket)
        self.buckets[emitter] = found
        return found

    def _prune(self) -> None:
        def spent(found: tuple[EmitterLimit, TokenBucket] | None) -> bool:
            return found is not None and found[1].tokens < found[1].burst

        self.buckets = {e: b for e, b in self.buckets.items() if spent(b)}
        # Amortised: when most are still spending, the next pruning waits until they double.
        self._prune_at = max(PRUNE_AT, 2 * len(self.buckets))

    # -- admitting -------------------------------------------------------------------------

    def check(self, packets: list[Packet], refused: Callable[..., None]) -> None:
        """Take `packets`' messages from their emitters' buckets, or raise Throttled (taking
        none) when one of them must wait; `refused(emitter, **why)` is told who first."""
        if len(packets) == 1 and packets[0].emitters is None:
            counts: dict[str | None, int] | Counter[str | None] = {
                packets[0].emitter: packets[0].messages
            }
        else:
            counts = messages_by_emitter(packets)
        taking = []
        for emitter, n in counts.items():
            found = self._bucket(emitter)
            if found is None:
                continue
            limit, bucket = found
            # A request larger than the burst passes once the bucket is full.
            wait = bucket.delay(min(n, bucket.burst))
            if wait > 0:
                refused(emitter, limit=limit.pattern, rate=limit.rate)
                raise Throttled(
                    f"emitter {emitter!r} is over its limit of {limit.rate:g} messages/s"
                    f" (burst {burst_of(limit):g}); keep the packets and retry",
                    retry_after=max(1, math.ceil(wait)),
                    detail={"emitter": emitter, "rate": limit.rate, "burst": burst_of(limit)},
                )
            taking.append((bucket, n))
        for bucket, n in taking:
            bucket.spend(n)

    # -- runtime changes -------------------------------------------------------------------

    def set(self, pattern: str, rate: object, burst: object = None) -> EmitterLimit:
        try:
            limit = emitter_limit(pattern, rate, burst)
        except ConfigError as exc:
            raise InvalidRequest(exc.message) from None
        self._change({**self.runtime, pattern: limit})
        return limit

    def clear(self, pattern: str) -> EmitterLimit:
        if pattern not in self.runtime:
            raise NotFound(
                f"no limit was set at runtime for {pattern!r}",
                {"runtime": sorted(self.runtime)},
            )
        limit = self.runtime[pattern]
        self._change({p: v for p, v in self.runtime.items() if p != pattern})
        return limit

    def _change(self, runtime: dict[str, EmitterLimit]) -> None:
        """Keep `runtime` in the state dir (when there is one), then make it the limits."""
        if self.path is not None:
            rows = [dataclasses.asdict(limit) for limit in runtime.values()]
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                replace_file(self.path, orjson.dumps({"version": 1, "limits": rows}))
            except OSError as exc:
                raise StateWriteFailed(
                    f"{self.path}: cannot keep the limits ({exc.strerror or exc}); nothing"
                    " was changed"
                ) from None
        self.runtime = runtime
        self.buckets.clear()  # made again under the new limits (full: a change is a pardon)
        self.active = self._any()

    def to_json(self) -> dict[str, Any]:
        return {
            "default": row(self.default) if self.default is not None else None,
            "configured": [row(limit) for limit in self.configured.values()],
            "runtime": [row(limit) for limit in self.runtime.values()],
            "kept": self.path is not None,
        }


def row(limit: EmitterLimit) -> dict[str, Any]:
    return {"emitter": limit.pattern, "rate": limit.rate, "burst": burst_of(limit)}


def load(path: Path) -> dict[str, EmitterLimit]:
    """The runtime limits kept at `path` (none when it does not exist)."""
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the runtime limits: {exc}") from None
    try:
        assert data["version"] == 1
        limits = [EmitterLimit(**r) for r in data["limits"]]
    except (AssertionError, KeyError, TypeError, ValueError, ConfigError) as exc:
        raise ConfigError(
            f"{path}: not logdist's runtime limits ({exc!r}); fix or move it away"
        ) from None
    return {limit.pattern: limit for limit in limits}
