"""The emitter daemon's composition root: one emitter, or a fleet of `cfg.fleet` of them in
this process, each with the control API (a fleet's under /e/ID/...)."""

from __future__ import annotations

import dataclasses
import secrets
import ssl

from aiohttp import web

from logdist.config import EmitterConfig
from logdist.emitter.control import add_control_routes, control_app
from logdist.emitter.control import make_app as make_single_app
from logdist.emitter.fleet import Fleet
from logdist.net.server import TLS
from logdist.net.tls import ServerTls, client_context
from logdist.net.web import json_response


def make_app(cfg: EmitterConfig) -> web.Application:
    """One emitter, or a fleet of `cfg.fleet` of them, whose control calls need its control
    token (made here unless given), its control port over TLS when it has a certificate."""
    if cfg.control_token is None:
        cfg = dataclasses.replace(cfg, control_token=secrets.token_urlsafe(24))
    tls = client_context(cfg.client, f"emitter {cfg.id}")
    app = make_fleet_app(cfg, tls) if cfg.fleet else make_single_app(cfg, tls)
    if (server := ServerTls.of(cfg.tls, "emitter")) is not None:
        app[TLS] = server
    return app


FLEET = web.AppKey("fleet", Fleet)


async def fleet_metrics(request: web.Request) -> web.Response:
    return json_response(request.app[FLEET].metrics())


async def health(request: web.Request) -> web.Response:
    fleet = request.app[FLEET]
    return json_response({"status": "ok", "fleet": fleet.cfg.id, "members": len(fleet.members)})


def make_fleet_app(cfg: EmitterConfig, tls: ssl.SSLContext | None = None) -> web.Application:
    fleet = Fleet(cfg, tls)
    app = control_app(FLEET, fleet, cfg)
    add_control_routes(
        app.router, "/e/{eid}", lambda request: fleet.member(request.match_info["eid"]).emitter
    )
    app.router.add_get("/metrics", fleet_metrics)
    app.router.add_get("/health", health)
    return app
