"""Ingest routes: packets (when served without the front door), flat records, OTLP/HTTP."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from logdist.core.checks import check_id
from logdist.distributor.inputs.packets import MANY, ONE, accepted, take
from logdist.distributor.inputs.parsing import GONE, ParseProcesses
from logdist.distributor.web.keys import DISTRIBUTOR, PARSE
from logdist.errors import Backpressure, LogdistError, UnsupportedMediaType
from logdist.formats.otlp import EMITTER as OTLP_EMITTER
from logdist.formats.otlp import otlp_kept
from logdist.formats.packet import Made, Packet
from logdist.formats.records import EMITTER as RECORDS_EMITTER
from logdist.formats.records import records_made
from logdist.net.web import (
    JSON,
    body_kind,
    error_headers,
    json_response,
    read_body,
)

# -- ingest -------------------------------------------------------------------------------


async def ingest(request: web.Request) -> web.Response:
    """`POST /log-packet` and `/log-packets` when the app is served without its front door.

    `logdist distributor serve` answers these in `front` (same rules, same answers); this
    route is what an embedding or a plain aiohttp server gets.
    """
    d = request.app[DISTRIBUTOR]
    route = ONE if request.path == "/log-packet" else MANY
    try:
        limit = d.cfg.max_body_bytes if route == ONE else d.cfg.max_batch_bytes
        ctype = request.headers.get("Content-Type")
        body = await read_body(request, limit)
        packets, wait = take(d.intake, route, ctype.encode("latin-1") if ctype else None, body)
        if wait is not None:
            await wait
    except LogdistError as exc:
        d.counters.rejected[exc.code] += 1
        raise
    return web.Response(body=accepted(route, packets), status=202, content_type=JSON)


async def ingest_records(request: web.Request) -> web.Response:
    """`POST /log-records`: flat JSON records (an array, one object, or NDJSON), as Fluent
    Bit's `http` output and Vector's `http` sink send them; owned like any packets. They are
    from the emitter `?emitter=ID` (or the `X-Logdist-Emitter` header) names, else from
    `records:PEER`, the sending host."""
    d = request.app[DISTRIBUTOR]
    try:
        body_kind(request)  # JSON or NDJSON (either is read from the body itself), else 415
        named = request.query.get("emitter") or request.headers.get("X-Logdist-Emitter")
        if named is not None:
            named = check_id("emitter", named)
        key = named or (f"{RECORDS_EMITTER}:{request.remote}" if request.remote else None)
        body = await read_body(request, d.cfg.max_batch_bytes)
        procs = request.app[PARSE]
        now = datetime.now(UTC)
        packets = await parsed(
            procs, key or RECORDS_EMITTER, records_made, body, now, named or RECORDS_EMITTER
        )
        wait = d.intake.accept_now(packets)
        if wait is not None:
            await wait
    except LogdistError as exc:
        d.counters.input_refused("records", exc.code)
        raise
    d.counters.input_took("records", packets)
    return json_response(
        {"accepted": sum(p.messages for p in packets), "packetIds": [p.id for p in packets]},
        status=202,
    )


PROTOBUF = "application/x-protobuf"
# The google.rpc.Code an OTLP client is given with each HTTP status.
RPC_CODES = {400: 3, 401: 16, 403: 7, 408: 4, 413: 8, 415: 3, 422: 3, 429: 8, 503: 14}


async def ingest_otlp(request: web.Request) -> web.Response:
    """`POST /v1/logs`: OTLP/HTTP logs, protobuf or JSON (gzip or not), answered as the OTLP
    specification says: 200 with an ExportLogsServiceResponse in the request's encoding once
    owned; 503 (or 429) with Retry-After when full, which exporters retry; 400 for a body that
    does not decode, 413, 415, each with a google.rpc.Status saying why; never a 500."""
    d = request.app[DISTRIBUTOR]
    ctype = request.content_type if request.headers.get("Content-Type") else ""
    kind = "protobuf" if ctype == PROTOBUF else "json"
    try:
        if ctype not in (PROTOBUF, JSON):
            raise UnsupportedMediaType(
                f"Content-Type {ctype!r} is not OTLP; send {PROTOBUF} or {JSON}"
            )
        body = await read_body(request, d.cfg.max_batch_bytes)
        now, peer = datetime.now(UTC), request.remote or ""
        # Kept as it came: converted only for an analyzer that does not take OTLP.
        key = d.cfg.otlp_emitter_attribute
        packets = await parsed(
            request.app[PARSE], OTLP_EMITTER, otlp_kept, body, kind, peer, now, key
        )
        if packets:
            wait = d.intake.accept_now(packets)
            if wait is not None:
                await wait
    except LogdistError as exc:
        d.counters.input_refused("otlp", exc.code)
        return otlp_error(exc, kind)
    d.counters.input_took("otlp", packets)
    if kind == "protobuf":
        body = ExportLogsServiceResponse().SerializeToString()
        return web.Response(body=body, content_type=PROTOBUF)
    return web.Response(body=b"{}", content_type=JSON)


async def parsed(
    procs: ParseProcesses, emitter: str, make: Callable[..., list[Made]], *args: Any
) -> list[Packet]:
    """The packets `make(*args)` makes of a request, in a parse process when there are some
    (a record costs several microseconds of Python). A process found gone is replaced, and the
    request is answered 503 (which exporters and shippers retry) rather than lost or a 500."""
    try:
        made: list[Made] = await procs.call(None, make, *args)
    except GONE:
        procs.close_broken()
        raise Backpressure("a parse process restarted; retry", retry_after=1) from None
    kept = make is otlp_kept
    return [
        Packet(id=pid, emitter=own or emitter, messages=n, body=b, otlp=kept)
        for pid, n, b, own in made
    ]


def otlp_error(exc: LogdistError, kind: str) -> web.Response:
    status = Status(code=RPC_CODES.get(exc.status, 2), message=exc.message)
    headers = error_headers(exc)
    if kind == "protobuf":
        return web.Response(
            body=status.SerializeToString(),
            status=exc.status,
            content_type=PROTOBUF,
            headers=headers,
        )
    body = orjson.dumps({"code": status.code, "message": status.message})
    return web.Response(body=body, status=exc.status, content_type=JSON, headers=headers)


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_post("/log-packet", ingest)
    r.add_post("/log-packets", ingest)
    r.add_post("/log-records", ingest_records)
    r.add_post("/v1/logs", ingest_otlp)
