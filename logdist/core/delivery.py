"""How one analyzer takes packets: framing, extra headers, health check, compression.

Pure values and their checks; the dispatcher and the health checker read them. Header values
are secrets (bearer tokens, API keys): `to_json` shows them as `***`, and nothing logs them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from logdist.core.checks import check_url
from logdist.errors import InvalidRequest

FORMATS = ("auto", "ndjson", "json-array", "json")
COMPRESSIONS = ("none", "gzip")
HEALTH_MODES = ("active", "passive")
SECRET = "***"

# RFC 9110 token characters: what a header name may be made of.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers logdist writes itself for the framing and the body; an operator's copy would
# contradict them.
_RESERVED = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "content-encoding",
        "transfer-encoding",
        "connection",
    }
)


def invalid(field: str, message: str) -> InvalidRequest:
    """A bad value for `field`: a 422 whose detail names the field."""
    return InvalidRequest(message, {"field": field})


def check_choice(field: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise invalid(field, f"{field} must be one of {', '.join(choices)}, got {value!r}")
    return value


def check_header(name: object, value: object) -> tuple[str, str]:
    """One extra request header, checked: a token name, a value with no line breaks."""
    if not isinstance(name, str) or not _TOKEN.match(name):
        raise invalid("headers", f"header name must be an HTTP token, got {name!r}")
    if name.lower() in _RESERVED:
        raise invalid(
            "headers", f"header {name!r} is set by logdist itself (format, compression, framing)"
        )
    if not isinstance(value, str):
        raise invalid("headers", f"header {name!r} must have a string value")
    if any(c in value for c in "\r\n\0"):
        raise invalid("headers", f"header {name!r} has a line break or NUL in its value")
    return name, value.strip()


def parse_header_line(line: str) -> tuple[str, str]:
    """`Name: value`, as curl's `-H` takes it."""
    name, colon, value = line.partition(":")
    if not colon:
        raise invalid("headers", f"a header is 'Name: value', got {line!r} (no colon)")
    return check_header(name.strip(), value)


def check_headers(value: object) -> tuple[tuple[str, str], ...]:
    """A JSON object (or TOML table) of header names to values."""
    if not isinstance(value, Mapping):
        raise invalid("headers", "headers must be an object of header names to string values")
    checked = [check_header(k, v) for k, v in value.items()]
    names = [n.lower() for n, _ in checked]
    if len(set(names)) != len(names):
        raise invalid("headers", "a header is named twice (names are case-insensitive)")
    return tuple(checked)


def check_health_url(value: object) -> str | None:
    if value is None:
        return None
    try:
        return check_url(value)
    except InvalidRequest as exc:
        raise invalid("health_url", f"health_url: {exc.message}") from None


@dataclass(frozen=True, slots=True)
class Delivery:
    """An analyzer's delivery settings.

    format: `auto` (NDJSON batches if its /health says `"batch": true`, else one packet per
    POST), `ndjson`, `json-array` (batches) or `json` (one packet per POST).
    headers: extra request headers on every forward and probe.
    health_url: where to probe (None: `/health` beside the ingest URL).
    health: `active` (probes) or `passive` (judged by its forwards alone).
    compression: `none` or `gzip` (the forwards' bodies).
    """

    format: str = "auto"
    headers: tuple[tuple[str, str], ...] = ()
    health_url: str | None = None
    health: str = "active"
    compression: str = "none"

    @property
    def passive(self) -> bool:
        return self.health == "passive"

    def to_json(self) -> dict[str, Any]:
        """As every view shows it: header values masked."""
        return {
            "format": self.format,
            "headers": {name: SECRET for name, _ in self.headers},
            "health_url": self.health_url,
            "health_check": self.health,
            "compression": self.compression,
        }

    def to_state(self) -> dict[str, Any]:
        """As kept in state.json: header values in clear (the file is mode 0600)."""
        return {
            "format": self.format,
            "headers": dict(self.headers),
            "health_url": self.health_url,
            "health": self.health,
            "compression": self.compression,
        }


KEYS = ("format", "headers", "health_url", "health", "compression")

DELIVERED = "delivered"
FAILED = "failed"
REFUSED = "refused"


def outcome(status: int) -> str:
    """What an analyzer's answer means for the packets it was sent.

    2xx: delivered. 408, 429 and anything else outside 4xx (5xx, a redirect): the analyzer
    failed, and another one is tried. Any other 4xx: it refused the *data*, which says
    nothing against its health.
    """
    if 200 <= status < 300:
        return DELIVERED
    if 400 <= status < 500 and status not in (408, 429):
        return REFUSED
    return FAILED


def delivery_from(values: Mapping[str, Any], base: Delivery | None = None) -> Delivery:
    """`base` (default: the defaults) with the delivery keys found in `values` applied.

    `headers` replaces the whole set; every value is checked, and a bad one is an
    InvalidRequest naming its field.
    """
    d = base or Delivery()
    changes: dict[str, Any] = {}
    if "format" in values:
        changes["format"] = check_choice("format", values["format"], FORMATS)
    if "headers" in values:
        changes["headers"] = check_headers(values["headers"] or {})
    if "health_url" in values:
        changes["health_url"] = check_health_url(values["health_url"])
    if "health" in values:
        changes["health"] = check_choice("health", values["health"], HEALTH_MODES)
    if "compression" in values:
        changes["compression"] = check_choice("compression", values["compression"], COMPRESSIONS)
    d = replace(d, **changes)
    if d.passive and d.health_url is not None:
        raise invalid("health_url", "health = passive probes nothing: drop health_url")
    return d


def merge_headers(
    current: tuple[tuple[str, str], ...], changes: Mapping[str, str | None]
) -> dict[str, str]:
    """`current` with `changes` applied: a value sets a header, None removes it."""
    out = {n: v for n, v in current}
    lower = {n.lower(): n for n in out}
    for name, value in changes.items():
        old = lower.pop(name.lower(), None)
        if old is not None:
            del out[old]
        if value is not None:
            out[name] = value
            lower[name.lower()] = name
    return out
