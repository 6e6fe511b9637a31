"""Cluster mode's control plane: analyzers, emitter registrations and replicas in a JetStream
key-value bucket (`<stream>_CONTROL`), replicated like the stream.

Keys: `analyzer.<id>` (the analyzer's row: url, weight, admin state, delivery settings; the
same row `--state-dir` keeps), `emitter.<id>` (a registration: control URL, metrics, the
address it came from), `replica.<id>` (a replica's heartbeat: URL, in flight, fetched,
acknowledged, time), and `meta.seeded` (set once the first replica put its config's analyzers
in the bucket; later ones take the bucket's).

An admin call on any replica reads the analyzer's entry, computes the new row and writes it
with compare-and-set on the entry's revision (trying again when another replica wrote
between); every replica — the writer included — applies what its watch of the bucket sees,
so there is one code path for a change, and the writer answers once its own watch applied
it. Ids may hold `:`, which keys may not: it is written `=` (which ids may not hold).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import nats.errors
import nats.js.errors
import orjson
from nats.js.kv import KV_DEL, KV_PURGE

from logdist.errors import Backpressure, Conflict, LogdistError
from logdist.events import event

log = logging.getLogger("logdist.cluster")

# Compare-and-set attempts before an admin call gives up (409) when replicas keep racing.
CAS_TRIES = 10
# Seconds an admin call waits for its own replica's watch to apply what it wrote.
APPLY_WAIT = 2.0
# Seconds between a replica's heartbeats; a replica not heard from for REPLICA_GONE is gone.
HEARTBEAT = 1.0
REPLICA_GONE = 5.0
# Seconds without this replica's own heartbeat coming back through the watch before the
# watch is made again.
WATCH_STALE = 4.0

# JetStream's "wrong last sequence" error codes: the compare-and-set lost a race.
WRONG_LAST = (10071, 10164)

Row = dict[str, Any]


def key_of(kind: str, ident: str) -> str:
    return f"{kind}.{ident.replace(':', '=')}"


def ident_of(key: str) -> tuple[str, str]:
    kind, _, rest = key.partition(".")
    return kind, rest.replace("=", ":")


class Watcher:
    """What a replica does with the bucket's entries (the distributor's appliers)."""

    def __init__(
        self,
        analyzer: Callable[[Row], None],
        analyzer_removed: Callable[[str], None],
        emitter: Callable[[Row], None],
    ) -> None:
        self.analyzer = analyzer
        self.analyzer_removed = analyzer_removed
        self.emitter = emitter


class ControlPlane:
    def __init__(self, bucket: str, replicas: int, replica: str, retry_after: float) -> None:
        self.bucket = bucket
        self.replicas = replicas
        self.replica = replica
        self.retry_after = retry_after
        self._kv: Any = None
        self._watcher: Watcher | None = None
        self._waiters: list[tuple[Callable[[Any], bool], asyncio.Future[Any]]] = []
        self.peers: dict[str, Row] = {}  # replica id -> its latest heartbeat
        self.applied = 0
        self.revision = 0  # the latest the watch applied
        self._own_key = key_of("replica", replica)
        self._heard_self = 0.0  # when the watch last brought this replica's heartbeat
        self._beat_ok = 0.0  # when a heartbeat was last written
        self._deleted: set[str] = set()  # keys whose latest entry is a deletion
        self.writes = 0
        self.conflicts = 0
        self.loaded = False

    # -- opening --------------------------------------------------------------------------

    async def open(self, js: Any, seed: list[Row], watcher: Watcher) -> Any:
        """Open (or create) the bucket, put `seed` in it if no replica did yet, and start
        watching: returns the watch once every entry already there is applied (the caller
        goes on with `follow`)."""
        from nats.js.api import KeyValueConfig

        config = KeyValueConfig(bucket=self.bucket, history=1, replicas=self.replicas)
        try:
            self._kv = await js.create_key_value(config)
        except nats.js.errors.BadRequestError:
            self._kv = await js.key_value(self.bucket)
        self._watcher = watcher
        try:
            await self._kv.get("meta.seeded")
        except nats.js.errors.KeyNotFoundError:
            # The first replica: its config's analyzers go in (each only if absent, as
            # another replica starting now may do the same), then the mark — so a replica
            # that dies halfway leaves the next to finish.
            for row in seed:
                with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
                    await self._kv.create(key_of("analyzer", row["id"]), orjson.dumps(row))
            with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
                await self._kv.create("meta.seeded", orjson.dumps({"by": self.replica}))
            event(log, "control_seeded", replica=self.replica, analyzers=len(seed))
        watch = await self._kv.watchall()
        while (entry := await watch.updates(timeout=30)) is not None:
            self._apply(entry)
        self.loaded = True
        return watch

    async def follow(self, watch: Any) -> None:
        """Apply every change the watch sees, as long as the replica runs.

        The watch is a JetStream consumer on one server; when that server dies the client
        is meant to notice and make a new one, but may not. This replica's own heartbeat,
        written every HEARTBEAT seconds, is the canary: if the watch has not brought it back
        for WATCH_STALE seconds while the writes succeed, the watch is made again (it then
        replays every current entry, which changes nothing already applied)."""
        self._heard_self = time.monotonic()
        while True:
            try:
                entry = await watch.updates(timeout=HEARTBEAT)
            except nats.errors.TimeoutError:
                entry = None
            if entry is not None and hasattr(entry, "key"):  # not the stopped watch's end
                self._apply(entry)
                continue
            now = time.monotonic()
            if now - self._heard_self > WATCH_STALE and now - self._beat_ok < HEARTBEAT * 2:
                event(log, "control_watch_renewed", logging.WARNING, replica=self.replica)
                self._heard_self = now
                with contextlib.suppress(nats.errors.Error, TimeoutError, OSError):
                    await watch.stop()
                try:
                    watch = await self._kv.watchall()
                except (nats.errors.Error, TimeoutError, OSError) as exc:
                    event(log, "control_watch_failed", logging.WARNING, error=repr(exc))

    def _apply(self, entry: Any) -> None:
        assert self._watcher is not None
        kind, ident = ident_of(entry.key)
        deleted = entry.operation in (KV_DEL, KV_PURGE)
        try:
            if kind == "analyzer":
                if deleted:
                    self._watcher.analyzer_removed(ident)
                else:
                    self._watcher.analyzer(orjson.loads(entry.value))
            elif kind == "emitter" and not deleted:
                self._watcher.emitter(orjson.loads(entry.value))
            elif kind == "replica":
                if deleted:  # stopped cleanly: no longer listed
                    self.peers.pop(ident, None)
                else:
                    self.peers[ident] = orjson.loads(entry.value)
        except (LogdistError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            event(log, "control_entry_unusable", logging.ERROR, key=entry.key, error=repr(exc))
        self.applied += 1
        if entry.key == self._own_key:
            self._heard_self = time.monotonic()
        self.revision = max(self.revision, entry.revision or 0)
        if deleted:
            self._deleted.add(entry.key)
        else:
            self._deleted.discard(entry.key)
        for waiter in list(self._waiters):
            check, future = waiter
            if check(entry) and not future.done():
                future.set_result(None)
                self._waiters.remove(waiter)

    # -- writing --------------------------------------------------------------------------

    def _need(self) -> Any:
        if self._kv is None or not self.loaded:
            raise Backpressure(
                "the cluster's control bucket is not reachable yet; retry later",
                retry_after=self.retry_after,
            )
        return self._kv

    async def change_analyzer(self, aid: str, change: Callable[[Row | None], Row | None]) -> None:
        """Write `change(row now)` as analyzer `aid`'s row (None: remove it), compare-and-set
        on the entry's revision, and wait until this replica's watch applied it. `change`
        raises to refuse (unknown analyzer, one that exists, a bad value)."""
        kv = self._need()
        key = key_of("analyzer", aid)
        for _ in range(CAS_TRIES):
            try:
                row, revision = await self._get(kv, key)
                new = change(row)
                if new is None:
                    await kv.delete(key, last=revision)
                elif revision is None:
                    written = await kv.create(key, orjson.dumps(new))
                else:
                    written = await kv.update(key, orjson.dumps(new), last=revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                self.conflicts += 1
                continue
            except nats.js.errors.APIError as exc:
                if exc.err_code not in WRONG_LAST:
                    raise self._unreachable(exc) from None
                self.conflicts += 1  # a delete whose revision another replica moved on
                continue
            except (nats.errors.Error, TimeoutError, OSError) as exc:
                raise self._unreachable(exc) from None
            self.writes += 1
            if new is None:
                check = _deleted(key)
                done = key in self._deleted
            else:
                check = _at_least(written)
                done = self.revision >= written
            if not done:
                future = self._expect(check)
                try:
                    async with asyncio.timeout(APPLY_WAIT):
                        await future
                except TimeoutError:
                    self._waiters = [w for w in self._waiters if w[1] is not future]
                    # The watch is late (it is being made again): apply what was written
                    # now, through the same code; the watch applies it again, to no effect.
                    event(log, "control_applied_ahead", logging.WARNING, key=key)
                    assert self._watcher is not None
                    if new is None:
                        self._watcher.analyzer_removed(aid)
                    else:
                        self._watcher.analyzer(new)
            return
        raise Conflict(
            f"analyzer {aid!r} kept changing on other replicas; try again",
            {"tries": CAS_TRIES},
        )

    async def _get(self, kv: Any, key: str) -> tuple[Row | None, int | None]:
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyDeletedError as exc:
            # Deleted: create() would fail on the tombstone, so update over its revision.
            return None, exc.entry.revision if exc.entry is not None else None
        except nats.js.errors.KeyNotFoundError:
            return None, None
        return orjson.loads(entry.value), entry.revision

    def _expect(self, check: Callable[[Any], bool]) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((check, future))
        return future

    async def put_emitter(self, row: Row) -> None:
        """Keep an emitter's registration (every replica applies it from its watch)."""
        kv = self._need()
        try:
            await kv.put(key_of("emitter", row["id"]), orjson.dumps(row))
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            raise self._unreachable(exc) from None
        self.writes += 1

    async def heartbeat(self, row: Callable[[], Row]) -> None:
        """Say every HEARTBEAT seconds that this replica is alive, and what it holds."""
        while True:
            if self._kv is not None:
                try:
                    await self._kv.put(
                        key_of("replica", self.replica),
                        orjson.dumps({**row(), "id": self.replica, "at": time.time()}),
                    )
                    self._beat_ok = time.monotonic()
                except (nats.errors.Error, TimeoutError, OSError) as exc:
                    event(log, "heartbeat_failed", logging.WARNING, error=repr(exc))
            await asyncio.sleep(HEARTBEAT)

    async def leave(self) -> None:
        """A clean stop: take this replica's heartbeat out, so the others stop listing it (one
        that dies is listed as gone)."""
        if self._kv is None:
            return
        with contextlib.suppress(nats.errors.Error, TimeoutError, OSError):
            async with asyncio.timeout(1.0):
                await self._kv.delete(key_of("replica", self.replica))

    def summary(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "loaded": self.loaded,
            "revision": self.revision,
            "applied": self.applied,
            "writes": self.writes,
            "conflicts": self.conflicts,
        }

    def replicas_json(self) -> list[Row]:
        now = time.time()
        rows = []
        for rid, row in sorted(self.peers.items()):
            seen = now - float(row.get("at", 0))
            rows.append({**row, "id": rid, "last_seen": round(seen, 1), "up": seen < REPLICA_GONE})
        return rows

    def _unreachable(self, exc: BaseException) -> Backpressure:
        return Backpressure(
            f"the cluster's control bucket did not take the change ({exc!r}); retry later",
            retry_after=self.retry_after,
        )


def _at_least(revision: int) -> Callable[[Any], bool]:
    return lambda entry: entry.revision is not None and entry.revision >= revision


def _deleted(key: str) -> Callable[[Any], bool]:
    return lambda entry: entry.key == key and entry.operation in (KV_DEL, KV_PURGE)
