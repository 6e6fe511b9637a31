"""The distributor daemon: accepts packets, owns them until an analyzer acknowledges them."""

from logdist.distributor.app import make_app

__all__ = ["make_app"]
