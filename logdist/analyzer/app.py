"""`logdist analyzer serve`: POST /ingest, GET /health, GET /stats; with a store, GET /search,
/histogram and /context."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import orjson
from aiohttp import web
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from logdist.analyzer.segments import Item
from logdist.analyzer.store import Store, Written
from logdist.config import AnalyzerConfig
from logdist.core.dedupe import DedupeWindow
from logdist.errors import LogdistError, NotFound
from logdist.events import event
from logdist.formats.otlp import otlp_packets, unwrap
from logdist.formats.packet import (
    ENVELOPE,
    Lines,
    Packet,
    frame_ndjson,
    parse_batch,
    parse_one,
    parse_stored,
    read_lines,
)
from logdist.net.answers import content_kind, error, response
from logdist.net.fastpath import Connection, FrontDoor
from logdist.net.hosts import HostRule
from logdist.net.server import LISTENER, TLS, Listener
from logdist.net.tls import ServerTls
from logdist.net.web import (
    NDJSON,
    body_kind,
    error_middleware,
    host_middleware,
    json_response,
    read_body,
)
from logdist.search.query import Query, parse_context, parse_query

log = logging.getLogger("logdist.analyzer")
INTERNAL = orjson.dumps(
    {"error": "internal error; see the analyzer's log", "code": "internal_error"}
)


@dataclass
class EmitterCount:
    packets: int = 0
    messages: int = 0


@dataclass
class AnalyzerState:
    cfg: AnalyzerConfig
    window: DedupeWindow
    started: float = field(default_factory=time.monotonic)
    packets: int = 0
    messages: int = 0
    duplicates: int = 0
    requests: int = 0
    injected_failures: int = 0
    emitters: dict[str, EmitterCount] = field(default_factory=dict)
    output: IO[bytes] | None = None
    store: Store | None = None

    def take(self, packets: list[Packet]) -> list[Packet]:
        """Count `packets`, return the ones not seen before (duplicates are only counted)."""
        fresh = [p for p in packets if self.window.add(p.id)]
        self.duplicates += len(packets) - len(fresh)
        for p in fresh:
            self.packets += 1
            self.messages += p.messages
            self._count(p.emitter, 1, p.messages)
        if fresh and self.output is not None:
            # Written before the acknowledgement: what was acknowledged is on the file.
            self.output.write(frame_ndjson(fresh))
            self.output.flush()
        return fresh

    def take_lines(self, read: Lines) -> int:
        """`take` for a batch read the fast way (no Packet objects); the count of new ones."""
        ids, counts, emitters = read.ids, read.counts, read.emitters
        if self.window.add_all(ids):  # the usual batch: every packet new
            keep = list(range(len(ids)))
        else:
            add = self.window.add
            keep = [i for i, pid in enumerate(ids) if add(pid)]
        self.duplicates += len(ids) - len(keep)
        if not keep:
            return 0
        if len(keep) < len(ids):
            counts = [counts[i] for i in keep]
            emitters = [emitters[i] for i in keep]
        messages = sum(counts)
        self.packets += len(keep)
        self.messages += messages
        first = emitters[0]
        if emitters.count(first) == len(emitters):  # the usual batch: one emitter
            self._count(first, len(keep), messages)
        else:
            for emitter, n in zip(emitters, counts, strict=True):
                self._count(emitter, 1, n)
        if self.output is not None:
            every = read.lines()  # read with keep_lines when there is an output
            lines = every if len(keep) == len(ids) else [every[i] for i in keep]
            self.output.write(b"\n".join(lines) + b"\n")
            self.output.flush()
        return len(keep)

    def ingest(self, kind: str, body: bytes) -> dict[str, int]:
        """Count one /ingest body (`kind` json or ndjson); the fields of the answer."""
        read = read_lines(body, keep_lines=self.output is not None) if kind == "ndjson" else None
        if read is not None:
            self.requests += 1
            new = self.take_lines(read)
            count = len(read.ids)
            return {"accepted": count, "new": new, "duplicates": count - new}
        packets = _packets(kind, body)
        self.requests += 1
        fresh = len(self.take(packets))
        return {"accepted": len(packets), "new": fresh, "duplicates": len(packets) - fresh}

    def items(self, kind: str, body: bytes) -> list[Item]:
        """The packets of one /ingest body, for the store (checked as `ingest` checks them)."""
        self.requests += 1
        read = read_lines(body, keep_lines=True) if kind == "ndjson" else None
        if read is not None:
            return list(zip(read.ids, read.emitters, read.lines(), strict=True))
        return [(p.id, p.emitter, p.body) for p in _packets(kind, body)]

    def stored(self, items: list[Item], written: Written) -> dict[str, int]:
        """Count what the store wrote of `items`; the fields of the answer."""
        new = [items[i] for i in written.new]
        for (pid, emitter, _), messages in zip(new, written.counts, strict=True):
            self.window.add(pid)
            self._count(emitter, 1, messages)
        self.duplicates += len(items) - len(new)
        self.packets += len(new)
        self.messages += sum(written.counts)
        if new and self.output is not None:
            self.output.write(b"\n".join(line for _, _, line in new) + b"\n")
            self.output.flush()
        return {"accepted": len(items), "new": len(new), "duplicates": len(items) - len(new)}

    def _count(self, emitter: str | None, packets: int, messages: int) -> None:
        count = self.emitters.get(emitter or "-")
        if count is None:
            count = self.emitters[emitter or "-"] = EmitterCount()
        count.packets += packets
        count.messages += messages


def _packets(kind: str, body: bytes) -> list[Packet]:
    """A body read line by line or whole (a batch not read the fast way, or one packet).

    OTLP requests a distributor kept as they came (envelopes, sent to an analyzer whose
    /health says `"otlp": true`) are converted here: their records become messages.
    """
    if ENVELOPE in body:
        return [parse_one(unwrap(p.body)) if p.otlp else p for p in parse_stored(body)]
    if kind == "ndjson":
        return parse_batch(body, ndjson=True)
    if body.lstrip()[:1] == b"[":
        return parse_batch(body, ndjson=False)
    return [parse_one(body)]


STATE = web.AppKey("analyzer_state", AnalyzerState)
PROTOBUF = "application/x-protobuf"


def now_utc() -> datetime:
    return datetime.now(UTC)


async def ingest(request: web.Request) -> web.Response:
    state = request.app[STATE]
    kind = body_kind(request)
    body = await read_body(request, state.cfg.max_body_bytes)
    if state.cfg.delay:
        await asyncio.sleep(state.cfg.delay)
    if state.cfg.fail_rate and random.random() < state.cfg.fail_rate:
        state.injected_failures += 1
        return json_response({"error": "injected failure (--fail-rate)", "code": "injected"}, 500)
    if state.store is None:
        return json_response(state.ingest(kind, body))
    items = state.items(kind, body)
    written = await state.store.submit(items)
    return json_response(state.stored(items, written))


class IngestDoor(FrontDoor):
    """POST /ingest on the lean path (see `logdist.net.fastpath`): the distributor's megabyte
    batches skip aiohttp's request machinery and chunked body reads; other routes stay
    aiohttp's."""

    def __init__(self, state: AnalyzerState) -> None:
        super().__init__({b"/ingest": 1}, {1: state.cfg.max_body_bytes})
        self.state = state

    def handle(self, conn: Connection, route: int, ctype: bytes | None, body: bytes) -> None:
        state = self.state
        if state.store is None:
            answer = state.ingest(content_kind(ctype), body)
            conn.answer(response(200, orjson.dumps(answer), close=conn.close_after))
            return
        items = state.items(content_kind(ctype), body)
        # Answered once the store has committed them; the connection is not read meanwhile.
        entry = conn.defer()
        conn.hold()

        def done(future: asyncio.Future[Written]) -> None:
            conn.release()
            exc = future.exception()
            if exc is None:
                try:
                    answer = orjson.dumps(state.stored(items, future.result()))
                except Exception as bug:  # noqa: BLE001 - the request is answered all the same
                    event(log, "store_answer_failed", logging.ERROR, error=repr(bug))
                    exc = bug
                else:
                    conn.fulfil(entry, response(200, answer, close=entry[2]))
                    return
            if isinstance(exc, LogdistError):
                conn.fulfil(entry, error(exc, close=entry[2]))
            else:
                conn.fulfil(entry, response(500, INTERNAL, close=entry[2]))

        state.store.submit(items).add_done_callback(done)


async def ingest_otlp(request: web.Request) -> web.Response:
    """`POST /v1/logs`: an OTLP/HTTP export (protobuf or JSON), its records stored as the
    distributor's OTLP input makes them messages; answered with an ExportLogsServiceResponse."""
    state = request.app[STATE]
    protobuf = request.content_type == PROTOBUF
    body = await read_body(request, state.cfg.max_body_bytes)
    made = otlp_packets(body, "protobuf" if protobuf else "json", request.remote or "", now_utc())
    if made:
        lines = b"\n".join(p.body for p in made)
        if state.store is None:
            state.ingest("ndjson", lines)
        else:
            items = state.items("ndjson", lines)
            state.stored(items, await state.store.submit(items))
    if protobuf:
        return web.Response(
            body=ExportLogsServiceResponse().SerializeToString(), content_type=PROTOBUF
        )
    return web.Response(body=b"{}", content_type="application/json")


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    # `batch` tells the distributor it may send NDJSON batches to /ingest.
    return json_response(
        {
            "status": "ok",
            "id": state.cfg.id,
            "pid": os.getpid(),
            "batch": True,
            # It takes OTLP requests as they came (converting them itself), in its batches.
            "otlp": True,
            "formats": ["application/json", NDJSON],
            "store": state.store is not None,
        }
    )


async def stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body: dict[str, Any] = {
        "id": state.cfg.id,
        "packets": state.packets,
        "messages": state.messages,
        "duplicates": state.duplicates,
        "requests": state.requests,
        "injected_failures": state.injected_failures,
        "uptime": round(time.monotonic() - state.started, 3),
        "emitters": {
            k: {"packets": v.packets, "messages": v.messages} for k, v in state.emitters.items()
        },
    }
    if state.store is not None:
        body["store"] = state.store.summary()
    if request.query.get("ids") in ("1", "true", "yes"):
        body["ids"] = list(state.window)
        body["ids_truncated"] = state.window.evicted > 0
    return json_response(body)


def torn_tail(path: str) -> bool:
    """Whether the file at `path` ends in the middle of a line."""
    with open(path, "rb") as f:
        if f.seek(0, os.SEEK_END) == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


async def output_file(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    if state.cfg.output:
        state.output = open(state.cfg.output, "ab")  # noqa: SIM115 - closed below
        if torn_tail(state.cfg.output):
            # A previous run was killed in the middle of a line (its packet was never
            # acknowledged, so it is sent again): end that line, so that the next packet
            # starts a line of its own instead of being glued to the broken one.
            state.output.write(b"\n")
            state.output.flush()
            event(log, "output_torn_line_ended", logging.WARNING, path=state.cfg.output)
    yield
    if state.output is not None:
        state.output.close()
    event(
        log,
        "summary",
        id=state.cfg.id,
        packets=state.packets,
        messages=state.messages,
        duplicates=state.duplicates,
    )


def _store(request: web.Request) -> Store:
    store = request.app[STATE].store
    if store is None:
        raise NotFound("this analyzer keeps no store (start it with --store DIR)")
    return store


def _query(request: web.Request) -> Query:
    return parse_query(request.query, int(time.time() * 1000))


async def _read(request: web.Request, fn: Any, *args: Any) -> web.Response:
    """Run a read of the store in a thread of its own: the event loop keeps serving."""
    result = await asyncio.get_running_loop().run_in_executor(None, fn, *args)
    return json_response(result)


async def search(request: web.Request) -> web.Response:
    store = _store(request)
    return await _read(request, store.search, _query(request))


async def histogram(request: web.Request) -> web.Response:
    store = _store(request)
    return await _read(request, store.histogram, _query(request))


async def context(request: web.Request) -> web.Response:
    store = _store(request)
    packet, index, before, after = parse_context(request.query)
    return await _read(request, store.context, packet, index, before, after)


async def open_store(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    cfg = state.cfg
    if cfg.store:
        state.store = Store(
            cfg.store,
            cfg.id,
            max_bytes=cfg.store_max_bytes,
            max_age=cfg.store_max_age,
            segment_seconds=cfg.store_segment,
            sync=cfg.store_sync,
        )
        await asyncio.get_running_loop().run_in_executor(None, state.store.open)
    yield
    if state.store is not None:
        await asyncio.get_running_loop().run_in_executor(None, state.store.close)


def make_app(cfg: AnalyzerConfig) -> web.Application:
    hosts = HostRule(cfg.host, cfg.allowed_hosts)
    app = web.Application(
        middlewares=[error_middleware, host_middleware(hosts)], client_max_size=cfg.max_body_bytes
    )
    state = app[STATE] = AnalyzerState(cfg, DedupeWindow(cfg.dedupe_window))
    if not cfg.delay and not cfg.fail_rate:
        # Injected delays and failures are served by the aiohttp route alone.
        door = IngestDoor(state)
        door.hosts = hosts
        app[LISTENER] = Listener(door.factory, door.close)
    if (tls := ServerTls.of(cfg.tls, "analyzer")) is not None:
        app[TLS] = tls
    app.cleanup_ctx.append(output_file)
    app.cleanup_ctx.append(open_store)
    app.router.add_post("/ingest", ingest)
    app.router.add_post("/v1/logs", ingest_otlp)
    app.router.add_get("/health", health)
    app.router.add_get("/stats", stats)
    app.router.add_get("/search", search)
    app.router.add_get("/histogram", histogram)
    app.router.add_get("/context", context)
    return app
