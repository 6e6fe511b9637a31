from __future__ import annotations

from logdist.cli import main

main()
