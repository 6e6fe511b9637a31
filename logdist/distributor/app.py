"""`logdist distributor serve`: the HTTP routes around `Distributor`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from logdist.config import DistributorConfig
from logdist.core.packet import parse_batch, parse_one
from logdist.core.registry import AdminState
from logdist.distributor.emitters import relay
from logdist.distributor.service import Distributor
from logdist.errors import LogdistError, UnsupportedMediaType
from logdist.http import (
    body_kind,
    error_middleware,
    json_response,
    read_body,
    read_json_object,
    require,
)

DISTRIBUTOR = web.AppKey("distributor", Distributor)


# -- ingest -------------------------------------------------------------------------------


async def log_packet(request: web.Request) -> web.Response:
    """One packet as a JSON object -> 202 {"packetId": ...}."""
    d = request.app[DISTRIBUTOR]
    try:
        if body_kind(request) != "json":
            raise UnsupportedMediaType(
                "POST /log-packet takes one packet as application/json; send NDJSON to /log-packets"
            )
        packet = parse_one(await read_body(request, d.cfg.max_body_bytes))
        d.dispatcher.accept([packet])
    except LogdistError as exc:
        d.counters.rejected[exc.code] += 1
        raise
    return json_response({"packetId": packet.id, "status": "accepted"}, status=202)


async def log_packets(request: web.Request) -> web.Response:
    """Many packets, a JSON array or NDJSON -> 202 {"accepted": n}; all or none are taken."""
    d = request.app[DISTRIBUTOR]
    try:
        ndjson = body_kind(request) == "ndjson"
        body = await read_body(request, d.cfg.max_batch_bytes)
        packets = parse_batch(body, ndjson=ndjson)
        d.dispatcher.accept(packets)
    except LogdistError as exc:
        d.counters.rejected[exc.code] += 1
        raise
    return json_response(
        {"accepted": len(packets), "packetIds": [p.id for p in packets]}, status=202
    )


# -- analyzers ----------------------------------------------------------------------------


async def get_registry(request: web.Request) -> web.Response:
    return json_response(request.app[DISTRIBUTOR].analyzers_json())


async def add_analyzer(request: web.Request) -> web.Response:
    d = request.app[DISTRIBUTOR]
    body = await read_json_object(request)
    analyzer = d.add_analyzer(require(body, "id"), require(body, "url"), body.get("weight", 1.0))
    return json_response(d.analyzer_json(analyzer.id), status=201)


async def remove_analyzer(request: web.Request) -> web.Response:
    d = request.app[DISTRIBUTOR]
    analyzer = d.remove_analyzer(request.match_info["aid"])
    return json_response({"removed": analyzer.id})


async def set_analyzer_state(request: web.Request) -> web.Response:
    d = request.app[DISTRIBUTOR]
    aid = request.match_info["aid"]
    state = {
        "enable": AdminState.ENABLED,
        "disable": AdminState.DISABLED,
        "drain": AdminState.DRAINING,
    }[request.match_info["action"]]
    d.set_state(aid, state)
    return json_response(d.analyzer_json(aid))


async def set_analyzer_weight(request: web.Request) -> web.Response:
    d = request.app[DISTRIBUTOR]
    aid = request.match_info["aid"]
    d.registry.get(aid)
    body = await read_json_object(request)
    d.set_weight(aid, require(body, "weight"))
    return json_response(d.analyzer_json(aid))


# -- emitters -----------------------------------------------------------------------------


async def register_emitter(request: web.Request) -> web.Response:
    d = request.app[DISTRIBUTOR]
    body = await read_json_object(request)
    info = d.emitters.register(require(body, "id"), require(body, "url"))
    return json_response({"id": info.id, "url": info.url})


async def list_emitters(request: web.Request) -> web.Response:
    return json_response(request.app[DISTRIBUTOR].emitters.to_json())


async def emitter_action(request: web.Request) -> web.Response:
    d = request.app[DISTRIBUTOR]
    info = d.emitters.get(request.match_info["eid"])
    action = request.match_info["action"]
    body = await read_json_object(request) if action == "rate" else None
    status, data = await relay(d.session, info, "POST", f"/{action}", body)
    return json_response(data, status=status)


async def emitter_metrics(request: web.Request) -> web.Response:
    d = request.app[DISTRIBUTOR]
    info = d.emitters.get(request.match_info["eid"])
    status, data = await relay(d.session, info, "GET", "/metrics")
    return json_response(data, status=status)


# -- status -------------------------------------------------------------------------------


async def status(request: web.Request) -> web.Response:
    return json_response(request.app[DISTRIBUTOR].status())


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def lifecycle(app: web.Application) -> AsyncIterator[None]:
    d = app[DISTRIBUTOR]
    await d.start()
    yield
    await d.stop()


def make_app(cfg: DistributorConfig) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=cfg.max_batch_bytes)
    app[DISTRIBUTOR] = Distributor(cfg)
    app.cleanup_ctx.append(lifecycle)
    r = app.router
    r.add_post("/log-packet", log_packet)
    r.add_post("/log-packets", log_packets)
    r.add_get("/registry", get_registry)
    r.add_post("/registry/add", add_analyzer)
    r.add_delete("/registry/{aid}", remove_analyzer)
    r.add_post("/analyzer/{aid}/{action:enable|disable|drain}", set_analyzer_state)
    r.add_post("/analyzer/{aid}/weight", set_analyzer_weight)
    r.add_post("/emitters/register", register_emitter)
    r.add_get("/emitters", list_emitters)
    r.add_post("/emitter/{eid}/{action:pause|resume|rate}", emitter_action)
    r.add_get("/emitter/{eid}/metrics", emitter_metrics)
    r.add_get("/status", status)
    r.add_get("/health", health)
    return app
