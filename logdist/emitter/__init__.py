"""The emitter daemon: generates packets at a rate and delivers them to the distributor; with
`fleet`, many emitters in one process."""

from aiohttp import web

from logdist.config import EmitterConfig
from logdist.emitter.app import make_app as make_single_app
from logdist.emitter.fleet import make_fleet_app


def make_app(cfg: EmitterConfig) -> web.Application:
    """One emitter, or a fleet of `cfg.fleet` of them."""
    return make_fleet_app(cfg) if cfg.fleet else make_single_app(cfg)


__all__ = ["make_app"]
