"""What the control plane costs: CPU seconds the distributor spent on registrations, leases
and views, as opposed to ingest and routing.

These sections are synchronous code in the event loop's one thread (no await inside), timed
with the thread's CPU clock (`time.thread_time`), so time the process spent preempted on a
busy machine is not counted as theirs. Not counted: parsing and writing the HTTP of those
requests (aiohttp's C parser, before and after a handler), and active health probes (a
probe's time is mostly waiting on the analyzer).

`tally` is kept apart: counting each accepted packet against its emitter (a C-speed Counter
update per request) is per-packet ingest work, the same for 20,000 emitters at 1/s as for
four at 5,000/s; what grows with the number of emitters (applying those tallies to each
emitter's lease, the sweep, the summary) is `leases`. A clock reading costs about a
microsecond, too much for once per ingest request, so the tally is timed on one call in
SAMPLE and counted SAMPLE times.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SECTIONS = ("registration", "leases", "views")
# One call in SAMPLE of a hot-path section is timed, and counted SAMPLE times.
SAMPLE = 8


class ControlMeter:
    __slots__ = ("registration", "leases", "views", "tally")

    def __init__(self) -> None:
        self.registration = 0.0  # POST /emitters/register
        self.leases = 0.0  # packets' tallies applied to leases, the sweep that expires them
        self.views = 0.0  # /status, /ws/metrics frames, /emitters and /registry pages
        self.tally = 0.0  # packets counted by emitter as accepted (ingest: not in `total`)

    @contextmanager
    def timed(self, section: str) -> Iterator[None]:
        started = time.thread_time()
        try:
            yield
        finally:
            setattr(self, section, getattr(self, section) + time.thread_time() - started)

    @property
    def total(self) -> float:
        return self.registration + self.leases + self.views

    def to_json(self) -> dict[str, Any]:
        out = {name: round(getattr(self, name), 6) for name in SECTIONS}
        out["total"] = round(self.total, 6)
        out["tally"] = round(self.tally, 6)
        return out
