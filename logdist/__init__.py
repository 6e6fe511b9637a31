"""logdist: move log packets from many emitters through one distributor to weighted analyzers."""

from __future__ import annotations

__version__ = "0.1.0"
