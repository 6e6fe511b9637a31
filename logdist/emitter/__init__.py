"""The emitter daemon: generates packets at a rate and delivers them to the distributor."""

from logdist.emitter.app import make_app

__all__ = ["make_app"]
