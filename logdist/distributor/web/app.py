"""`logdist distributor serve`: the HTTP routes around `Distributor`."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import WSCloseCode, web
from aiohttp.typedefs import Middleware
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from logdist.config import DistributorConfig
from logdist.core.delivery import delivery_from, invalid, merge_headers
from logdist.core.paging import PAGE_DEFAULT, PAGE_MAX
from logdist.core.registry import AdminState
from logdist.core.routed import LogFilter
from logdist.distributor.control.emitters import EmitterDirectory, EmitterInfo, relay
from logdist.distributor.inputs.packets import MANY, ONE, Front, accepted, take
from logdist.distributor.inputs.parsing import GONE, ParseProcesses, default_workers
from logdist.distributor.inputs.syslog import SyslogListener
from logdist.distributor.node import Distributor
from logdist.distributor.web.dashboard import add_dashboard
from logdist.errors import Backpressure, InvalidRequest, LogdistError, UnsupportedMediaType
from logdist.formats.otlp import EMITTER as OTLP_EMITTER
from logdist.formats.otlp import otlp_made
from logdist.formats.packet import Made, Packet
from logdist.formats.records import EMITTER as RECORDS_EMITTER
from logdist.formats.records import records_made
from logdist.net.server import BOUND, LISTENER, BoundAddress, Listener, ListenError
from logdist.net.web import (
    JSON,
    auth_middleware,
    body_kind,
    error_headers,
    error_middleware,
    json_response,
    origin_middleware,
    read_body,
    read_json_object,
    require,
)
from logdist.search.pool import PoolSearch
from logdist.search.pool import parse as parse_search
from logdist.search.query import parse_context

DISTRIBUTOR = web.AppKey("distributor", Distributor)
# A bare GET /emitters lists every emitter up to this many (past it, the first ones and a Link).
BARE_MAX = PAGE_MAX
SOCKETS = web.AppKey("sockets", set[web.WebSocketResponse])
SYSLOG = web.AppKey("syslog", SyslogListener)
PARSE = web.AppKey("parse", ParseProcesses)


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
        packets, wait = take(d, route, ctype.encode("latin-1") if ctype else None, body)
        if wait is not None:
            await wait
    except LogdistError as exc:
        d.counters.rejected[exc.code] += 1
        raise
    return web.Response(body=accepted(route, packets), status=202, content_type=JSON)


async def ingest_records(request: web.Request) -> web.Response:
    """`POST /log-records`: flat JSON records (an array, one object, or NDJSON), as Fluent
    Bit's `http` output and Vector's `http` sink send them; owned like any packets."""
    d = request.app[DISTRIBUTOR]
    try:
        body_kind(request)  # JSON or NDJSON (either is read from the body itself), else 415
        body = await read_body(request, d.cfg.max_batch_bytes)
        procs = request.app[PARSE]
        packets = await parsed(procs, RECORDS_EMITTER, records_made, body, datetime.now(UTC))
        wait = d.accept_now(packets)
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
        packets = await parsed(request.app[PARSE], OTLP_EMITTER, otlp_made, body, kind, peer, now)
        if packets:
            wait = d.accept_now(packets)
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
    return [Packet(id=pid, emitter=emitter, messages=n, body=b) for pid, n, b in made]


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


# -- analyzers ----------------------------------------------------------------------------


async def get_registry(request: web.Request) -> web.Response:
    """Bare: every analyzer as a list (the seed's form) up to BARE_MAX, the first BARE_MAX by
    id past it, with a `Link` to the rest. With q, health, limit or cursor: one page."""
    d = request.app[DISTRIBUTOR]
    query = request.query
    with d.control.timed("views"):
        if not any(k in query for k in ("q", "health", "limit", "cursor")):
            if len(d.registry) <= BARE_MAX:
                return json_response(d.analyzers_json())
            return _bare_first_page("/registry", d.registry_page(limit=BARE_MAX), "analyzers")
        return json_response(
            d.registry_page(
                q=query.get("q") or None,
                health=query.get("health") or None,
                limit=_limit(request, PAGE_DEFAULT),
                cursor=query.get("cursor") or None,
            )
        )


def _bare_first_page(path: str, page: dict[str, Any], key: str) -> web.Response:
    """The first page as a bare list, with the total and a Link to the next (RFC 8288)."""
    headers = {"X-Total-Count": str(page["total"])}
    if page["next"]:
        headers["Link"] = f'<{path}?limit={BARE_MAX}&cursor={page["next"]}>; rel="next"'
    return json_response(page[key], headers=headers)


async def add_analyzer(request: web.Request) -> web.Response:
    """`{"id", "url", "weight"?, "format"?, "headers"?, "health_url"?, "health"?,
    "compression"?}`."""
    d = request.app[DISTRIBUTOR]
    body = await read_json_object(request)
    aid, url = require(body, "id"), require(body, "url")
    analyzer = await d.admin_add(aid, url, body.get("weight", 1.0), delivery_from(body))
    return json_response(d.analyzer_json(analyzer.id), status=201)


CONFIG_KEYS = frozenset(
    {"format", "headers", "health_url", "health", "compression", "add_headers", "remove_headers"}
)


async def set_analyzer_config(request: web.Request) -> web.Response:
    """Change how an analyzer is delivered to; any of format, headers (the whole set),
    add_headers (an object: set these), remove_headers (a list of names), health_url (null:
    the sibling /health), health, compression."""
    d = request.app[DISTRIBUTOR]
    analyzer = d.registry.get(request.match_info["aid"])
    body = await read_json_object(request)
    unknown = sorted(set(body) - CONFIG_KEYS)
    if unknown:
        raise invalid(
            unknown[0],
            f"unknown key(s) {', '.join(unknown)}; known: " + ", ".join(sorted(CONFIG_KEYS)),
        )
    if not body:
        raise invalid("format", f"nothing to change; known keys: {', '.join(sorted(CONFIG_KEYS))}")
    values = {k: v for k, v in body.items() if k not in ("add_headers", "remove_headers")}
    if "add_headers" in body or "remove_headers" in body:
        add = body.get("add_headers") or {}
        remove = body.get("remove_headers") or []
        if not isinstance(add, dict):
            raise invalid("headers", "add_headers must be an object of names to values")
        if not isinstance(remove, list) or not all(isinstance(n, str) for n in remove):
            raise invalid("headers", "remove_headers must be a list of header names")
        base = values.get("headers", dict(analyzer.delivery.headers))
        if not isinstance(base, dict):
            raise invalid("headers", "headers must be an object of header names to values")
        changes: dict[str, str | None] = {n: None for n in remove}
        changes.update(add)
        values["headers"] = merge_headers(tuple(base.items()), changes)
    await d.admin_delivery(analyzer.id, delivery_from(values, analyzer.delivery))
    return json_response(d.analyzer_json(analyzer.id))


async def remove_analyzer(request: web.Request) -> web.Response:
    """Drain, then remove: what the analyzer holds is finished before it goes."""
    d = request.app[DISTRIBUTOR]
    return json_response(await d.admin_remove(request.match_info["aid"]))


async def set_analyzer_state(request: web.Request) -> web.Response:
    d = request.app[DISTRIBUTOR]
    aid = request.match_info["aid"]
    state = {
        "enable": AdminState.ENABLED,
        "disable": AdminState.DISABLED,
        "drain": AdminState.DRAINING,
    }[request.match_info["action"]]
    await d.admin_state(aid, state)
    return json_response(d.analyzer_json(aid))


async def set_analyzer_weight(request: web.Request) -> web.Response:
    d = request.app[DISTRIBUTOR]
    aid = request.match_info["aid"]
    d.registry.get(aid)
    body = await read_json_object(request)
    await d.admin_weight(aid, require(body, "weight"))
    return json_response(d.analyzer_json(aid))


# -- dead letters -------------------------------------------------------------------------


def _ids(body: dict[str, object]) -> list[str] | None:
    ids = body.get("ids")
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidRequest("ids must be a list of dead-letter ids (packet ids)")
    return ids


async def list_dead_letters(request: web.Request) -> web.Response:
    """The store's figures and its dead letters, oldest first (`?limit=`, default 1000)."""
    d = request.app[DISTRIBUTOR]
    try:
        limit = int(request.query.get("limit", "1000"))
    except ValueError:
        raise InvalidRequest(f"limit must be an integer, got {request.query['limit']!r}") from None
    if limit < 0:
        raise InvalidRequest(f"limit must be >= 0, got {limit}")
    store = d.dead_letters
    letters = [letter.summary() for letter in list(store.letters.values())[:limit]]
    return json_response({**store.to_json(), "letters": letters})


async def show_dead_letter(request: web.Request) -> web.Response:
    d = request.app[DISTRIBUTOR]
    return json_response(d.dead_letters.get(request.match_info["id"]).to_json())


async def replay_dead_letters(request: web.Request) -> web.Response:
    """`{"ids": [...]}` (or none: all) back into the queue."""
    d = request.app[DISTRIBUTOR]
    body = await read_json_object(request)
    return json_response(d.replay_dead_letters(_ids(body)))


async def purge_dead_letters(request: web.Request) -> web.Response:
    """`{"ids": [...]}` (or none: all) deleted for good."""
    d = request.app[DISTRIBUTOR]
    body = await read_json_object(request)
    return json_response(d.purge_dead_letters(_ids(body)))


# -- emitters -----------------------------------------------------------------------------


async def register_emitter(request: web.Request) -> web.Response:
    d = request.app[DISTRIBUTOR]
    body = await read_json_object(request)
    emitters = d.emitters
    eid, url = require(body, "id"), require(body, "url")
    if d.cluster is not None:  # kept in the control bucket; every replica learns it
        info = await d.admin_register(eid, url, body.get("metrics"), request.remote)
        return registered(info, emitters)
    with d.control.timed("registration"):
        return registered(
            emitters.register(eid, url, body.get("metrics"), request.remote), emitters
        )


def registered(info: EmitterInfo, emitters: EmitterDirectory) -> web.Response:
    # The emitter renews within `renew` seconds (jittered), or sooner when its state changes.
    return json_response(
        {"id": info.id, "url": info.url, "lease": emitters.lease, "renew": emitters.renew_every}
    )


def _limit(request: web.Request, default: int) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(f"limit must be an integer, got {raw!r}", {"field": "limit"}) from None


async def list_emitters(request: web.Request) -> web.Response:
    """Bare: every emitter as a list (the seed's form) up to BARE_MAX, the first BARE_MAX by id
    past it, with a `Link` to the rest. With q, state, limit or cursor: one page."""
    d = request.app[DISTRIBUTOR]
    emitters = d.emitters
    query = request.query
    with d.control.timed("views"):
        if not any(k in query for k in ("q", "state", "limit", "cursor")):
            if len(emitters) <= BARE_MAX:
                return json_response(emitters.to_json())
            return _bare_first_page("/emitters", emitters.page(limit=BARE_MAX), "emitters")
        page = emitters.page(
            q=query.get("q") or None,
            state=query.get("state") or None,
            limit=_limit(request, PAGE_DEFAULT),
            cursor=query.get("cursor") or None,
        )
        return json_response(page)


async def emitter_action(request: web.Request) -> web.Response:
    d = request.app[DISTRIBUTOR]
    info = d.emitters.get(request.match_info["eid"])
    action = request.match_info["action"]
    body = await read_json_object(request) if action == "rate" else None
    status, data = await relay(d.session, info, "POST", f"/{action}", body)
    if status == 200 and isinstance(data, dict):
        d.emitters.reported(info, data)
    return json_response(data, status=status)


async def emitter_metrics(request: web.Request) -> web.Response:
    d = request.app[DISTRIBUTOR]
    info = d.emitters.get(request.match_info["eid"])
    status, data = await relay(d.session, info, "GET", "/metrics")
    if status == 200 and isinstance(data, dict):
        d.emitters.reported(info, data)
    return json_response(data, status=status)


# -- status -------------------------------------------------------------------------------


def status_body(d: Distributor) -> bytes:
    """The /status document as sent (a GET, or one /ws/metrics frame), its cost metered."""
    with d.control.timed("views"):
        return orjson.dumps(d.status())


async def status(request: web.Request) -> web.Response:
    body = status_body(request.app[DISTRIBUTOR])
    return web.Response(body=body, content_type=JSON)


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def prometheus(request: web.Request) -> web.Response:
    body = generate_latest(request.app[DISTRIBUTOR].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# -- routed logs and live views -----------------------------------------------------------


def log_query(request: web.Request) -> tuple[int, LogFilter]:
    q = request.query
    try:
        n = int(q.get("n", "100"))
    except ValueError:
        raise InvalidRequest(f"n must be an integer, got {q.get('n')!r}") from None
    if not 0 <= n <= 100_000:
        raise InvalidRequest(f"n must be between 0 and 100000, got {n}")
    return n, LogFilter(q.get("analyzer") or None, q.get("emitter") or None, q.get("level") or None)


async def recent_logs(request: web.Request) -> web.Response:
    """The last `n` routed messages (filters: analyzer, emitter, level), oldest first."""
    n, flt = log_query(request)
    return json_response(request.app[DISTRIBUTOR].logs.ring.recent(n, flt))


def _pool(request: web.Request) -> PoolSearch:
    d = request.app[DISTRIBUTOR]
    return PoolSearch(d.registry, d.session, d.cfg.search_timeout)


async def search_logs(request: web.Request) -> web.Response:
    """Stored messages from every analyzer with a store, newest first, paged by `cursor`."""
    return json_response(await _pool(request).search(parse_search(request.query)))


async def histogram_logs(request: web.Request) -> web.Response:
    """Stored messages per time bucket and level, summed over the analyzers' stores."""
    return json_response(await _pool(request).histogram(parse_search(request.query)))


async def context_logs(request: web.Request) -> web.Response:
    """The messages around one stored message, from the same emitter, in time order."""
    packet, index, before, after = parse_context(request.query)
    return json_response(await _pool(request).context(packet, index, before, after))


async def _stream(
    request: web.Request, produce: Callable[[web.WebSocketResponse], Awaitable[None]]
) -> web.WebSocketResponse:
    """Run `produce` on a new WebSocket while reading it, so a client's close is seen at once."""
    ws = web.WebSocketResponse(heartbeat=20)
    await ws.prepare(request)
    sockets = request.app[SOCKETS]
    sockets.add(ws)
    sender = asyncio.ensure_future(produce(ws))
    try:
        async for _ in ws:
            pass  # clients send nothing; this is where their close arrives
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
            await sender
        sockets.discard(ws)
    return ws


async def ws_logs(request: web.Request) -> web.WebSocketResponse:
    """The backlog of routed messages, then each new one as routed (`follow=0`: backlog only)."""
    d = request.app[DISTRIBUTOR]
    n, flt = log_query(request)
    follow = request.query.get("follow", "1") not in ("0", "false", "no")

    async def produce(ws: web.WebSocketResponse) -> None:
        sub = d.logs.subscribe(flt) if follow else None
        try:
            for entry in d.logs.ring.recent(n, flt):
                await ws.send_bytes(orjson.dumps(entry))
            if sub is None:
                await ws.close()
                return
            while True:
                await ws.send_bytes(orjson.dumps(await sub.queue.get()))
        finally:
            if sub is not None:
                d.logs.unsubscribe(sub)

    return await _stream(request, produce)


async def ws_metrics(request: web.Request) -> web.WebSocketResponse:
    """The `/status` document once a second."""
    d = request.app[DISTRIBUTOR]

    async def produce(ws: web.WebSocketResponse) -> None:
        while True:
            await ws.send_bytes(status_body(d))
            await asyncio.sleep(1.0)

    return await _stream(request, produce)


async def close_sockets(app: web.Application) -> None:
    sockets: set[web.WebSocketResponse] = app[SOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"distributor stopping")


async def lifecycle(app: web.Application) -> AsyncIterator[None]:
    d = app[DISTRIBUTOR]
    await d.start()
    syslog = app[SYSLOG]
    try:
        await syslog.start()
    except ListenError:
        await syslog.close()
        app[PARSE].close()
        await d.stop()
        raise
    yield
    await syslog.close()  # what syslog gathered is owned before the queue drains
    app[PARSE].close()
    await d.stop()


INGEST_PATHS = frozenset(
    {"/log-packet", "/log-packets", "/log-records", "/v1/logs", "/emitters/register"}
)


def is_public(path: str) -> bool:
    return path in ("/", "/health") or path.startswith("/ui/")


def make_app(cfg: DistributorConfig) -> web.Application:
    middlewares: list[Middleware] = [
        error_middleware,
        origin_middleware(
            lambda path: path in INGEST_PATHS or is_public(path),
            cfg.allow_origins,
            " (--allow-origin adds an origin)",
        ),
    ]
    if cfg.admin_token or cfg.ingest_token:
        middlewares.append(
            auth_middleware(cfg.admin_token, cfg.ingest_token, INGEST_PATHS, is_public)
        )
    app = web.Application(middlewares=middlewares, client_max_size=cfg.max_batch_bytes)
    d = app[DISTRIBUTOR] = Distributor(cfg)
    bound = app[BOUND] = BoundAddress()
    if d.cluster is not None:  # its heartbeat says where it listens, once it does (port 0)
        d.cluster.where = lambda: bound.url or f"http://{cfg.host}:{cfg.port}"
    front = Front(d)
    workers = cfg.parse_workers if cfg.parse_workers is not None else default_workers()
    # Syslog packet ids are PREFIX-wN-SEQ (a parse process's), PREFIX-SEQ or PREFIX-udp-SEQ:
    # a token of each start keeps them apart from an earlier run's, which analyzers may have
    # seen (they drop an id they have seen as a duplicate).
    prefix = f"syslog-{secrets.token_hex(6)}"
    procs = app[PARSE] = ParseProcesses(workers, prefix, cfg.syslog.max_message_bytes)
    app[SYSLOG] = SyslogListener(d, cfg.syslog, procs)
    app[LISTENER] = Listener(front.factory, front.close)
    app[SOCKETS] = set()
    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(close_sockets)
    add_dashboard(app)
    r = app.router
    r.add_post("/log-packet", ingest)
    r.add_post("/log-packets", ingest)
    r.add_post("/log-records", ingest_records)
    r.add_post("/v1/logs", ingest_otlp)
    r.add_get("/registry", get_registry)
    r.add_post("/registry/add", add_analyzer)
    r.add_delete("/registry/{aid}", remove_analyzer)
    r.add_post("/analyzer/{aid}/{action:enable|disable|drain}", set_analyzer_state)
    r.add_post("/analyzer/{aid}/weight", set_analyzer_weight)
    r.add_post("/analyzer/{aid}/config", set_analyzer_config)
    r.add_get("/dead-letters", list_dead_letters)
    r.add_post("/dead-letters/replay", replay_dead_letters)
    r.add_post("/dead-letters/purge", purge_dead_letters)
    r.add_get("/dead-letters/{id:.+}", show_dead_letter)
    r.add_post("/emitters/register", register_emitter)
    r.add_get("/emitters", list_emitters)
    r.add_post("/emitter/{eid}/{action:pause|resume|rate}", emitter_action)
    r.add_get("/emitter/{eid}/metrics", emitter_metrics)
    r.add_get("/status", status)
    r.add_get("/health", health)
    r.add_get("/metrics", prometheus)
    r.add_get("/logs", recent_logs)
    r.add_get("/logs/search", search_logs)
    r.add_get("/logs/histogram", histogram_logs)
    r.add_get("/logs/context", context_logs)
    r.add_get("/ws/logs", ws_logs)
    r.add_get("/ws/metrics", ws_metrics)
    return app
