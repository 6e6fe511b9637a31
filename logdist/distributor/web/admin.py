"""Admin routes: the analyzers, the dead letters, the emitters and their limits."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from logdist.core import paging
from logdist.core.delivery import OPTION_KEYS, delivery_from, invalid, merge_headers
from logdist.core.registry import AdminState
from logdist.distributor.control.emitters import EmitterDirectory, EmitterInfo, relay
from logdist.distributor.routing.limits import row
from logdist.distributor.web.keys import DISTRIBUTOR
from logdist.errors import InvalidRequest
from logdist.net.web import bearer_ok, json_response, read_json_object, require

# A bare GET /emitters or /registry lists every one up to this many (past it, the first
# ones and a Link).
BARE_MAX = paging.PAGE_MAX


# -- analyzers ----------------------------------------------------------------------------


async def get_registry(request: web.Request) -> web.Response:
    """Bare: every analyzer as a list (the seed's form) up to BARE_MAX, the first BARE_MAX by
    id past it, with a `Link` to the rest. With q, health, limit or cursor: one page."""
    d = request.app[DISTRIBUTOR]
    query = request.query
    with d.control.timed("views"):
        if not any(k in query for k in ("q", "health", "limit", "cursor")):
            if len(d.registry) <= BARE_MAX:
                return json_response(d.views.analyzers_json())
            return _bare_first_page("/registry", d.views.registry_page(limit=BARE_MAX), "analyzers")
        return json_response(
            d.views.registry_page(
                q=query.get("q") or None,
                health=query.get("health") or None,
                limit=paging.read_limit(request.query),
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
    "compression"?}` and the format's options (docs/outputs.md)."""
    d = request.app[DISTRIBUTOR]
    body = await read_json_object(request)
    aid, url = require(body, "id"), require(body, "url")
    analyzer = await d.admin.add(aid, url, body.get("weight", 1.0), delivery_from(body))
    return json_response(d.views.analyzer_json(analyzer.id), status=201)


CONFIG_KEYS = frozenset(
    {"format", "headers", "health_url", "health", "compression", "add_headers", "remove_headers"}
) | frozenset(OPTION_KEYS)


async def set_analyzer_config(request: web.Request) -> web.Response:
    """Change how an analyzer is delivered to; any of format, headers (the whole set),
    add_headers (an object: set these), remove_headers (a list of names), health_url (null:
    the sibling /health), health, compression, an option of its format (null: its default)."""
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
    await d.admin.delivery(analyzer.id, delivery_from(values, analyzer.delivery))
    return json_response(d.views.analyzer_json(analyzer.id))


async def access(request: web.Request) -> web.Response:
    """What the presented token may do: `admin` (anything), `read` (read only), or `open`
    (no admin token is set). The dashboard shows read-only controls by it."""
    cfg = request.app[DISTRIBUTOR].cfg
    if cfg.admin_token is None:
        role = "open"
    elif bearer_ok(request, cfg.admin_token):
        role = "admin"
    else:
        role = "read"  # the middleware let it through: it is the read token
    return json_response({"role": role})


async def remove_analyzer(request: web.Request) -> web.Response:
    """Drain, then remove: what the analyzer holds is finished before it goes."""
    d = request.app[DISTRIBUTOR]
    return json_response(await d.admin.remove(request.match_info["aid"]))


async def set_analyzer_state(request: web.Request) -> web.Response:
    d = request.app[DISTRIBUTOR]
    aid = request.match_info["aid"]
    state = {
        "enable": AdminState.ENABLED,
        "disable": AdminState.DISABLED,
        "drain": AdminState.DRAINING,
    }[request.match_info["action"]]
    await d.admin.state_of(aid, state)
    return json_response(d.views.analyzer_json(aid))


async def set_analyzer_weight(request: web.Request) -> web.Response:
    d = request.app[DISTRIBUTOR]
    aid = request.match_info["aid"]
    d.registry.get(aid)
    body = await read_json_object(request)
    await d.admin.weight(aid, require(body, "weight"))
    return json_response(d.views.analyzer_json(aid))


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
    limit = paging.read_int(request.query, "limit", 1000, 0)
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
    return json_response(d.admin.replay_dead_letters(_ids(body)))


async def purge_dead_letters(request: web.Request) -> web.Response:
    """`{"ids": [...]}` (or none: all) deleted for good."""
    d = request.app[DISTRIBUTOR]
    body = await read_json_object(request)
    return json_response(d.admin.purge_dead_letters(_ids(body)))


# -- emitters -----------------------------------------------------------------------------


async def register_emitter(request: web.Request) -> web.Response:
    d = request.app[DISTRIBUTOR]
    body = await read_json_object(request)
    emitters = d.emitters
    eid, url = require(body, "id"), require(body, "url")
    metrics, secret = body.get("metrics"), body.get("secret")
    if d.cluster is not None:  # kept in the control bucket; every replica learns it
        info = await d.admin.register(eid, url, metrics, request.remote, secret)
        return registered(info, emitters)
    with d.control.timed("registration"):
        return registered(emitters.register(eid, url, metrics, request.remote, secret), emitters)


def registered(info: EmitterInfo, emitters: EmitterDirectory) -> web.Response:
    # The emitter renews within `renew` seconds (jittered), or sooner when its state changes.
    return json_response(
        {"id": info.id, "url": info.url, "lease": emitters.lease, "renew": emitters.renew_every}
    )


async def list_emitters(request: web.Request) -> web.Response:
    """Bare: every emitter as a list (the seed's form) up to BARE_MAX, the first BARE_MAX by id
    past it, with a `Link` to the rest. With q, state, limit or cursor: one page."""
    d = request.app[DISTRIBUTOR]
    emitters = d.emitters
    query = request.query
    with d.control.timed("views"):
        if not any(k in query for k in ("q", "state", "limit", "cursor", "sort")):
            if len(emitters) <= BARE_MAX:
                return json_response(emitters.to_json())
            return _bare_first_page("/emitters", emitters.page(limit=BARE_MAX), "emitters")
        page = emitters.page(
            q=query.get("q") or None,
            state=query.get("state") or None,
            limit=paging.read_limit(request.query),
            cursor=query.get("cursor") or None,
            sort=query.get("sort") or "id",
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


# -- per-emitter limits -------------------------------------------------------------------


async def list_limits(request: web.Request) -> web.Response:
    return json_response(request.app[DISTRIBUTOR].dispatcher.limits.to_json())


async def set_limit(request: web.Request) -> web.Response:
    """`PUT /limits/{emitter}` {"rate": R, "burst": B}: an id, or a prefix ending in *."""
    limits = request.app[DISTRIBUTOR].dispatcher.limits
    body = await read_json_object(request)
    unknown = sorted(set(body) - {"rate", "burst"})
    if unknown:
        raise InvalidRequest(f"unknown field(s) {', '.join(unknown)}; known: rate, burst")
    limit = limits.set(request.match_info["emitter"], require(body, "rate"), body.get("burst"))
    return json_response({"set": row(limit), "kept": limits.path is not None})


async def clear_limit(request: web.Request) -> web.Response:
    limits = request.app[DISTRIBUTOR].dispatcher.limits
    limit = limits.clear(request.match_info["emitter"])
    return json_response({"cleared": row(limit), "kept": limits.path is not None})


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/registry", get_registry)
    r.add_post("/registry/add", add_analyzer)
    r.add_delete("/registry/{aid}", remove_analyzer)
    r.add_post("/analyzer/{aid}/{action:enable|disable|drain}", set_analyzer_state)
    r.add_post("/analyzer/{aid}/weight", set_analyzer_weight)
    r.add_post("/analyzer/{aid}/config", set_analyzer_config)
    r.add_get("/dead-letters", list_dead_letters)
    r.add_get("/access", access)
    r.add_post("/dead-letters/replay", replay_dead_letters)
    r.add_post("/dead-letters/purge", purge_dead_letters)
    r.add_get("/dead-letters/{id:.+}", show_dead_letter)
    r.add_post("/emitters/register", register_emitter)
    r.add_get("/emitters", list_emitters)
    r.add_post("/emitter/{eid}/{action:pause|resume|rate}", emitter_action)
    r.add_get("/emitter/{eid}/metrics", emitter_metrics)
    r.add_get("/limits", list_limits)
    r.add_put("/limits/{emitter:.+}", set_limit)
    r.add_delete("/limits/{emitter:.+}", clear_limit)
