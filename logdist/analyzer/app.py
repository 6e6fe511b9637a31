"""`logdist analyzer serve`: POST /ingest, GET /health, GET /stats."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson
from aiohttp import web

from logdist.config import AnalyzerConfig
from logdist.core.dedupe import DedupeWindow
from logdist.core.packet import Lines, Packet, frame_ndjson, parse_batch, parse_one, read_lines
from logdist.daemon import LISTENER, Listener
from logdist.front import Connection, FrontDoor, content_kind, response
from logdist.http import NDJSON, body_kind, error_middleware, json_response, read_body
from logdist.log import event

log = logging.getLogger("logdist.analyzer")


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
        if kind == "ndjson":
            packets = parse_batch(body, ndjson=True)
        elif body.lstrip()[:1] == b"[":
            packets = parse_batch(body, ndjson=False)
        else:
            packets = [parse_one(body)]
        self.requests += 1
        fresh = len(self.take(packets))
        return {"accepted": len(packets), "new": fresh, "duplicates": len(packets) - fresh}

    def _count(self, emitter: str | None, packets: int, messages: int) -> None:
        count = self.emitters.get(emitter or "-")
        if count is None:
            count = self.emitters[emitter or "-"] = EmitterCount()
        count.packets += packets
        count.messages += messages


STATE = web.AppKey("analyzer_state", AnalyzerState)


async def ingest(request: web.Request) -> web.Response:
    state = request.app[STATE]
    kind = body_kind(request)
    body = await read_body(request, state.cfg.max_body_bytes)
    if state.cfg.delay:
        await asyncio.sleep(state.cfg.delay)
    if state.cfg.fail_rate and random.random() < state.cfg.fail_rate:
        state.injected_failures += 1
        return json_response({"error": "injected failure (--fail-rate)", "code": "injected"}, 500)
    return json_response(state.ingest(kind, body))


class IngestDoor(FrontDoor):
    """POST /ingest on the lean path (see `logdist.front`): the distributor's megabyte batches
    skip aiohttp's request machinery and chunked body reads; other routes stay aiohttp's."""

    def __init__(self, state: AnalyzerState) -> None:
        super().__init__({b"/ingest": 1}, {1: state.cfg.max_body_bytes})
        self.state = state

    def handle(self, conn: Connection, route: int, ctype: bytes | None, body: bytes) -> None:
        answer = self.state.ingest(content_kind(ctype), body)
        conn.answer(response(200, orjson.dumps(answer), close=conn.close_after))


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    # `batch` tells the distributor it may send NDJSON batches to /ingest.
    return json_response(
        {
            "status": "ok",
            "id": state.cfg.id,
            "pid": os.getpid(),
            "batch": True,
            "formats": ["application/json", NDJSON],
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


def make_app(cfg: AnalyzerConfig) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=cfg.max_body_bytes)
    state = app[STATE] = AnalyzerState(cfg, DedupeWindow(cfg.dedupe_window))
    if not cfg.delay and not cfg.fail_rate:
        # Injected delays and failures are served by the aiohttp route alone.
        door = IngestDoor(state)
        app[LISTENER] = Listener(door.factory, door.close)
    app.cleanup_ctx.append(output_file)
    app.router.add_post("/ingest", ingest)
    app.router.add_get("/health", health)
    app.router.add_get("/stats", stats)
    return app
