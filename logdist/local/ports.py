"""Which process holds a TCP port: for `logdist up` to name what stands in its way.

Linux only in its detail (it reads /proc/net/tcp and each process's open sockets); elsewhere
a busy port is still found, with no process named.
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import socket
from dataclasses import dataclass
from pathlib import Path

LISTEN = "0A"


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str


def in_use(host: str, port: int) -> bool:
    """Whether host:port cannot be listened on because something already does."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def listening_inodes(port: int, proc: Path = Path("/proc")) -> set[str]:
    """Inodes of the sockets listening on `port` (any address), from /proc/net/tcp{,6}."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (proc / "net" / table).read_text().splitlines()[1:]:
                fields = line.split()
                listens = len(fields) > 9 and fields[3] == LISTEN
                if listens and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    return inodes


def command_of(cmdline: list[str]) -> str:
    """A short name for a command line: `logdist distributor serve` for python -m logdist."""
    if "-m" in cmdline[:-1]:
        at = cmdline.index("-m")
        words = cmdline[at + 1 :]
    else:
        words = [os.path.basename(cmdline[0]), *cmdline[1:]] if cmdline else ["?"]
    text = " ".join(words)
    if len(text) <= 64:
        return text
    cut = text[:61].rsplit(" ", 1)[0] if " " in text[:61] else text[:60]
    return cut + " ..."


def holder_of(port: int, proc: Path = Path("/proc")) -> Holder | None:
    """The process listening on `port`, if this user may see it."""
    inodes = listening_inodes(port, proc)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in wanted:
                        raw = (entry / "cmdline").read_bytes().rstrip(b"\0")
                        argv = [w.decode(errors="replace") for w in raw.split(b"\0")]
                        return Holder(int(entry.name), command_of(argv))
    return None


def holders(endpoints: list[tuple[str, str, int]]) -> list[tuple[str, int, Holder | None]]:
    """Of (name, host, port), those whose port is taken, with what holds it where known."""
    return [(name, port, holder_of(port)) for name, host, port in endpoints if in_use(host, port)]


def free_run(count: int, rand: random.Random | None = None) -> int:
    """A first port such that it and the next `count - 1` can be listened on now, below the
    kernel's ephemeral range (ip_local_port_range): ports a run of daemons will bind one by
    one, which no other process's outgoing connection can be given meanwhile, as a port
    picked from that range can (NATS servers make many such connections)."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rand = rand or random.Random()
    top = max(2048, low) - count
    for _ in range(200):
        first = rand.randrange(1024, top)
        if not any(in_use("127.0.0.1", first + k) for k in range(count)):
            return first
    raise OSError(errno.EADDRINUSE, f"no {count} consecutive free ports below {low}")
