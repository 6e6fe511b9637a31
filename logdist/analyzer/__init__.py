"""The analyzer daemon: receives packets, dedupes them by packetId, counts and records them."""

from logdist.analyzer.app import make_app

__all__ = ["make_app"]
