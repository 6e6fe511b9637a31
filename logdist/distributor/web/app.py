"""`logdist distributor serve`: the HTTP face of the distributor (middlewares, routes)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import WSCloseCode, web
from aiohttp.typedefs import Middleware

from logdist.config import DistributorConfig
from logdist.distributor.node import Distributor
from logdist.distributor.web import admin, ingest, views
from logdist.distributor.web.dashboard import add_dashboard
from logdist.distributor.web.keys import DISTRIBUTOR, PARSE, SOCKETS, SYSLOG
from logdist.net.hosts import HostRule
from logdist.net.server import BOUND, LISTENER, TLS, BoundAddress, Listener
from logdist.net.web import (
    auth_middleware,
    error_middleware,
    host_middleware,
    origin_middleware,
)


async def close_sockets(app: web.Application) -> None:
    sockets: set[web.WebSocketResponse] = app[SOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"distributor stopping")


async def lifecycle(app: web.Application) -> AsyncIterator[None]:
    d = app[DISTRIBUTOR]
    await d.start()
    yield
    await d.stop()


INGEST_PATHS = frozenset(
    {"/log-packet", "/log-packets", "/log-records", "/v1/logs", "/emitters/register"}
)


def is_public(path: str) -> bool:
    return path in ("/", "/health") or path.startswith("/ui/")


def make_app(cfg: DistributorConfig) -> web.Application:
    hosts = HostRule(cfg.host, cfg.allowed_hosts)
    middlewares: list[Middleware] = [
        error_middleware,
        host_middleware(hosts),
        origin_middleware(
            lambda path: path in INGEST_PATHS or is_public(path),
            cfg.allow_origins,
            " (--allow-origin adds an origin)",
        ),
    ]
    if cfg.admin_token or cfg.ingest_token:
        middlewares.append(
            auth_middleware(
                cfg.admin_token, cfg.ingest_token, INGEST_PATHS, is_public, cfg.read_token
            )
        )
    app = web.Application(middlewares=middlewares, client_max_size=cfg.max_batch_bytes)
    d = app[DISTRIBUTOR] = Distributor(cfg)
    bound = app[BOUND] = BoundAddress()
    if d.cluster is not None:  # its heartbeat says where it listens, once it does (port 0)
        d.cluster.where = lambda: bound.url or f"http://{cfg.host}:{cfg.port}"
    app[PARSE], app[SYSLOG] = d.procs, d.syslog
    d.front.hosts = hosts
    app[LISTENER] = Listener(d.front.factory, d.front.close)
    if d.tls is not None:
        app[TLS] = d.tls
    app[SOCKETS] = set()
    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(close_sockets)
    add_dashboard(app)
    for routes in (ingest, admin, views):
        routes.add_routes(app.router)
    return app
