"""An emitter daemon's control API: pause, resume, rate, metrics, sent (a fleet's members
under /e/ID/...), behind its Host guard, its origin check and its control token."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from aiohttp import web
from aiohttp.typedefs import Middleware

from logdist.config import EmitterConfig
from logdist.emitter.app import Emitter
from logdist.errors import Unauthorized
from logdist.net.hosts import HostRule
from logdist.net.server import BOUND, BoundAddress
from logdist.net.web import (
    Handler,
    bearer_ok,
    error_middleware,
    host_middleware,
    json_response,
    origin_middleware,
    read_json_object,
    require,
)

EMITTER = web.AppKey("emitter", Emitter)


Find = Callable[[web.Request], Emitter]


def add_control_routes(router: web.UrlDispatcher, prefix: str, find: Find) -> None:
    """The control API of the emitter `find` gives for a request, under `prefix`: pause,
    resume, rate, metrics and sent (a single emitter at the root, a fleet's member under
    /e/{eid})."""

    async def pause(request: web.Request) -> web.Response:
        emitter = find(request)
        emitter.pause()
        return json_response(emitter.metrics())

    async def resume(request: web.Request) -> web.Response:
        emitter = find(request)
        emitter.resume()
        return json_response(emitter.metrics())

    async def rate(request: web.Request) -> web.Response:
        emitter = find(request)
        body = await read_json_object(request)
        emitter.set_rate(require(body, "rps"))
        return json_response(emitter.metrics())

    async def metrics(request: web.Request) -> web.Response:
        emitter = find(request)
        return json_response({**emitter.metrics(), "distributors": emitter.targets.describe()})

    async def sent(request: web.Request) -> web.Response:
        """Packets the distributor acknowledged; `?ids=1` lists their ids (the last
        `track_ids`; none are kept with --track-ids 0, a fleet's default)."""
        emitter = find(request)
        body: dict[str, Any] = {"packets": emitter.sent_packets, "messages": emitter.sent_messages}
        if request.query.get("ids") in ("1", "true", "yes"):
            body["ids"] = list(emitter.sent_ids)
            body["ids_truncated"] = emitter.sent_packets > len(emitter.sent_ids)
            if emitter.sent_ids.maxlen == 0:
                body["hint"] = "this emitter keeps no delivered ids: start it with --track-ids N"
        return json_response(body)

    router.add_post(f"{prefix}/pause", pause)
    router.add_post(f"{prefix}/resume", resume)
    router.add_post(f"{prefix}/rate", rate)
    router.add_get(f"{prefix}/metrics", metrics)
    router.add_get(f"{prefix}/sent", sent)


class Runs(Protocol):
    async def start(self, bound: BoundAddress) -> None: ...
    async def stop(self) -> None: ...


def control_middleware(token: str) -> Middleware:
    """A control call (every POST: pause, resume, rate) presents the emitter's control token,
    which only the distributors it registered with were given; reads stay open."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "POST" and not bearer_ok(request, token):
            raise Unauthorized(
                "a control call needs the emitter's control token as 'Authorization: Bearer"
                " <token>' (the distributor it registered with has it: use logdist ctl emitter …)"
            )
        return await handler(request)

    return middleware


def control_app(key: web.AppKey[Any], runner: Runs, cfg: EmitterConfig) -> web.Application:
    """An emitter daemon's app: `runner` (an emitter or a fleet) under `key`, started when
    the app starts and stopped (draining) when it stops; routes are the caller's."""
    middlewares = [
        error_middleware,
        host_middleware(HostRule(cfg.host, cfg.allowed_hosts)),
        origin_middleware(lambda path: path == "/health"),
    ]
    if cfg.control_token is not None:
        middlewares.append(control_middleware(cfg.control_token))
    app = web.Application(middlewares=middlewares, client_max_size=64 * 1024)
    app[key] = runner
    app[BOUND] = BoundAddress()

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await runner.start(app[BOUND])
        yield
        await runner.stop()

    app.cleanup_ctx.append(lifecycle)
    return app


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "id": request.app[EMITTER].cfg.id})


def make_app(cfg: EmitterConfig, tls: ssl.SSLContext | None = None) -> web.Application:
    app = control_app(EMITTER, Emitter(cfg, tls=tls), cfg)
    add_control_routes(app.router, "", lambda request: request.app[EMITTER])
    app.router.add_get("/health", health)
    return app
