"""The start of a parse process (see `parsing`). The distributor's packages import nothing
eagerly, so a spawned process loads only what it runs: `formats.syslog_stream` and
`formats.otlp`."""

from __future__ import annotations

import ctypes
import os
import signal

from logdist.formats.syslog_stream import worker_init

PR_SET_PDEATHSIG = 1


def start(prefix: str, max_frame: int, parent: int) -> None:
    """Die with the distributor, leave Ctrl-C to it, then read what it hands over."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the pool's pipe closing ends it instead
        pass
    if os.getppid() != parent:  # the distributor died before the death signal was set
        os._exit(0)
    # A terminal's Ctrl-C reaches the whole process group; the distributor stops its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker_init(prefix, max_frame)
