"""Which `Host` a daemon answers to: its guard against DNS rebinding.

A page on `evil.example` that makes its name resolve to 127.0.0.1 can have the operator's
browser call a daemon on loopback: the browser sends `Host: evil.example:PORT` and an `Origin`
of the same site, so an origin check alone passes. A daemon therefore answers only the names
it is reached by on this machine — `localhost` (and `*.localhost`), this machine's host name,
the name it was bound to — and those `--allowed-host` adds (a leading dot: any name under it).
An address (`127.0.0.1:8080`, `[::1]`) is always answered: an address is never rebound. A
request without `Host` (HTTP/1.0) is answered too: no browser sends one.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import socket
from collections.abc import Iterable

from logdist.core.checks import check_allowed_host
from logdist.errors import MisdirectedHost

# Host values judged, kept (a flood of distinct names is judged each time beyond this).
CACHE = 1024


def _name(host: str) -> str | None:
    """The name in a Host value, port and final dot dropped; None for an address."""
    host = host.strip().lower()
    if host.startswith("["):  # an IPv6 address, with or without a port
        return None
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name.rstrip(".")
    return None


@functools.cache
def machine_names() -> frozenset[str]:
    """This machine's names, looked up once a process (a slow resolver costs one wait)."""
    names = {"localhost", socket.gethostname().lower()}
    with contextlib.suppress(OSError):
        names.add(socket.getfqdn().lower())
    return frozenset(names)


class HostRule:
    def __init__(self, bound: str = "", allowed: Iterable[str] = ()) -> None:
        names = set(machine_names())
        bound_name = _name(bound) if bound else None
        if bound_name:
            names.add(bound_name)
        allowed = [check_allowed_host(a) for a in allowed]
        self.names = frozenset(names | {a for a in allowed if not a.startswith(".")})
        self.suffixes = (".localhost", *(a for a in allowed if a.startswith(".")))
        self._seen: dict[str, bool] = {}

    def allows(self, host: str | None) -> bool:
        if not host:
            return True
        known = self._seen.get(host)
        if known is not None:
            return known
        name = _name(host)
        ok = name is None or name in self.names or name.endswith(self.suffixes)
        if len(self._seen) < CACHE:
            self._seen[host] = ok
        return ok

    def refusal(self, host: str) -> MisdirectedHost:
        return MisdirectedHost(
            f"Host {host!r} is not a name this daemon answers to (a guard against DNS"
            " rebinding): use localhost, an address or this machine's name, or add the name"
            " with --allowed-host",
            {"host": host, "rule": "allowed_hosts"},
        )
