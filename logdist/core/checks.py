"""Checks of ids, URLs, origins and networks, shared by the registry, the config, the
delivery settings and the emitter directory."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from logdist.errors import ConfigError, InvalidRequest

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


def check_id(kind: str, value: object) -> str:
    """Return `value` if it is a usable id: 1-64 of letters, digits, `_.:-`."""
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise InvalidRequest(
            f"{kind} id must be 1-64 letters, digits or _.:- starting with a letter or digit,"
            f" got {value!r}"
        )
    return value


def check_url(value: object, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """Return `value` if it is an absolute URL of one of `schemes` (http or https) with a
    host, else raise."""
    if not isinstance(value, str):
        raise InvalidRequest(f"url must be a string, got {type(value).__name__}")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"url {value!r} is not valid: {exc}") from None
    if parts.scheme not in schemes or not parts.hostname:
        kinds = " or ".join(f"{s}://" for s in schemes)
        raise InvalidRequest(f"url must be an absolute {kinds} URL, got {value!r}")
    if port == 0:
        raise InvalidRequest(f"url {value!r} has port 0")
    return value


DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(value: str) -> str | None:
    """`scheme://host:port` of a URL or an `Origin` header, normalised (lower case, the
    default port written out) so that two spellings of one origin compare equal; None if
    `value` names no http(s) origin (e.g. `null`)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port or DEFAULT_PORTS[scheme]}"


def check_origin(value: str) -> str:
    """An origin for an allow-list, normalised; a ConfigError if it is not one."""
    origin = origin_of(value)
    if origin is None or urlsplit(value).path not in ("", "/"):
        raise ConfigError(
            f"allow_origins: {value!r} is not an origin like https://logs.example:8443"
        )
    return origin


def check_network(value: str) -> str:
    """A network in CIDR notation (10.0.0.0/8, fd00::/8; a bare address is a /32 or /128)."""
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ConfigError(f"emitter_networks: {value!r} is not a network like 10.0.0.0/8") from None


LOCALHOST = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


def control_url(url: object, peer: str | None, networks: tuple[str, ...]) -> str:
    """The control URL an emitter registered, if the distributor may call it; else raise.

    It must point at the address the registration came from, or into one of `networks`
    (the operator's allow-list): else anyone allowed to register could make the distributor
    send requests anywhere it can reach. A host of 0.0.0.0 or :: (an emitter listening on
    every address) means the registration's address, and is rewritten to it. Host names are
    refused (but `localhost`, for a peer on loopback): what they resolve to can change after
    the check.
    """
    checked = check_url(url)
    parts = urlsplit(checked)
    host = parts.hostname or ""
    try:
        peer_ip = ipaddress.ip_address(peer) if peer else None
    except ValueError:
        peer_ip = None
    if peer_ip is not None and peer_ip.version == 6 and peer_ip.ipv4_mapped is not None:
        peer_ip = peer_ip.ipv4_mapped
    rule = (
        "an emitter's control URL must point at the address its registration came from"
        f" ({peer or 'unknown'}) or into a network given by --emitter-networks"
    )
    if host.lower() == "localhost":
        targets: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = LOCALHOST
    else:
        try:
            targets = (ipaddress.ip_address(host),)
        except ValueError:
            raise InvalidRequest(f"{rule}; a host name ({host!r}) cannot be checked") from None
        if targets[0].is_unspecified and peer_ip is not None:
            netloc = f"[{peer_ip}]" if peer_ip.version == 6 else str(peer_ip)
            if parts.port is not None:
                netloc += f":{parts.port}"
            checked = parts._replace(netloc=netloc).geturl()
            targets = (peer_ip,)
    allowed = [ipaddress.ip_network(n) for n in networks]
    for target in targets:
        if target == peer_ip or any(target in net for net in allowed):
            return checked
    raise InvalidRequest(f"{rule}; got {host}")


def check_allowed_host(value: object) -> str:
    """An `--allowed-host` value: a name (`logs.example`), or `.example` for any name under it."""
    if not isinstance(value, str) or not value.strip(".") or any(c in value for c in " /:@\t"):
        raise ConfigError(f"allowed host must be a host name like logs.example, got {value!r}")
    return value.lower()
