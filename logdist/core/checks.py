"""Checks of ids and URLs, shared by the registry, the config and the delivery settings."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from logdist.errors import InvalidRequest

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


def check_id(kind: str, value: object) -> str:
    """Return `value` if it is a usable id: 1-64 of letters, digits, `_.:-`."""
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise InvalidRequest(
            f"{kind} id must be 1-64 letters, digits or _.:- starting with a letter or digit,"
            f" got {value!r}"
        )
    return value


def check_url(value: object) -> str:
    """Return `value` if it is an absolute http(s) URL with a host, else raise."""
    if not isinstance(value, str):
        raise InvalidRequest(f"url must be a string, got {type(value).__name__}")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"url {value!r} is not valid: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"url must be an absolute http:// or https:// URL, got {value!r}")
    if port == 0:
        raise InvalidRequest(f"url {value!r} has port 0")
    return value
