"""How one analyzer takes packets: framing, extra headers, health check, compression.

Pure values and their checks; the dispatcher and the health checker read them. Header values
are secrets (bearer tokens, API keys): `to_json` shows them as `***`, and nothing logs them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from logdist.core.checks import check_url
from logdist.errors import InvalidRequest
from logdist.formats.syslog import FACILITIES

# logdist's own packet shapes, then the analyzers people run (docs/outputs.md).
PACKET_FORMATS = ("auto", "ndjson", "json-array", "json")
FORMATS = (
    *PACKET_FORMATS,
    "records",
    "elasticsearch",
    "loki",
    "splunk-hec",
    "otlp",
    "syslog",
)
TIMESTAMP_FORMATS = ("rfc3339", "unix", "unix_ms", "clickhouse")

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


def check_url_for(fmt: str, value: object) -> str:
    """An analyzer's URL for its format: `tcp://host:port` (or `tls://`, RFC 5425) for
    syslog, else http(s)."""
    if fmt == "syslog":
        url = check_url(value, ("tcp", "tls"))
        if urlsplit(url).port is None:
            raise InvalidRequest(
                f"a syslog url names its port, tcp://host:port or tls://host:port, got {url!r}"
            )
        return url
    return check_url(value)


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in "\r\n\0"):
        raise invalid(name, f"{name} must be a non-empty string on one line, got {value!r}")
    return value


def _names(name: str, value: object) -> tuple[str, ...]:
    """A list of field names, or one string of them separated by commas."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not value:
        raise invalid(name, f"{name} must be a non-empty list of field names, got {value!r}")
    for item in value:
        if not isinstance(item, str) or not _LABEL.match(item):
            raise invalid(
                name,
                f"{name}: {item!r} is not a label name (letters, digits, _; not first a digit)",
            )
    if len(set(value)) != len(value):
        raise invalid(name, f"{name} names a field twice")
    return tuple(value)


def _facility(name: str, value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(FACILITIES):
        return FACILITIES[value]
    if isinstance(value, str) and value.isdigit():
        return _facility(name, int(value))
    return check_choice(name, value, FACILITIES)


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One setting of a format: its name, default, what it means, and its check."""

    name: str
    default: Any
    help: str
    check: Callable[[str, object], Any]


_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Label fields whose values are seldom repeated: every value is a stream of its own in Loki.
UNBOUNDED_LABELS = frozenset(
    {"message", "ts", "packetId", "index", "emitter", "trace_id", "span_id", "id", "time"}
)

OPTIONS: dict[str, tuple[OptionSpec, ...]] = {
    "records": (
        OptionSpec(
            "timestamp_format",
            "rfc3339",
            "how `ts` is written: rfc3339, unix (seconds), unix_ms,"
            " clickhouse (YYYY-MM-DD hh:mm:ss, UTC)",
            lambda n, v: check_choice(n, v, TIMESTAMP_FORMATS),
        ),
    ),
    "elasticsearch": (
        OptionSpec("index", "logs", "the index or data stream documents are created in", _text),
    ),
    "loki": (
        OptionSpec(
            "labels",
            ("service", "level"),
            "the message fields that become stream labels",
            _names,
        ),
    ),
    "splunk-hec": (
        OptionSpec("index", None, "the Splunk index (unset: the token's default)", _text),
        OptionSpec("source", None, "the event's source (unset: the message's service)", _text),
        OptionSpec("sourcetype", "_json", "the event's sourcetype", _text),
        OptionSpec("host", None, "the event's host (unset: the message's host)", _text),
    ),
    "syslog": (
        OptionSpec("facility", "user", "the syslog facility, by name or number", _facility),
    ),
}
OPTION_KEYS = tuple(sorted({o.name for specs in OPTIONS.values() for o in specs}))


def option_spec(fmt: str, name: str) -> OptionSpec:
    for spec in OPTIONS.get(fmt, ()):
        if spec.name == name:
            return spec
    takes = ", ".join(o.name for o in OPTIONS.get(fmt, ())) or "none"
    users = [f for f, specs in OPTIONS.items() if any(o.name == name for o in specs)]
    raise invalid(
        name,
        f"format {fmt} has no option {name!r} (it is an option of {', '.join(users)});"
        f" format {fmt} takes: {takes}",
    )


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
    POST), `ndjson`, `json-array` (batches) or `json` (one packet per POST) — logdist's own
    packets —, or an analyzer's own protocol: `records`, `elasticsearch`, `loki`,
    `splunk-hec`, `otlp`, `syslog` (docs/outputs.md), with its `options`.
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
    # The format's own options that were set (OPTIONS): (name, value), by name.
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def passive(self) -> bool:
        return self.health == "passive"

    def option(self, name: str) -> Any:
        """The option's value: as set, else its default."""
        for key, value in self.options:
            if key == name:
                return value
        return option_spec(self.format, name).default

    def settings(self) -> dict[str, Any]:
        """Every option of its format, as set or by default."""
        return {o.name: self.option(o.name) for o in OPTIONS.get(self.format, ())}

    def to_json(self) -> dict[str, Any]:
        """As every view shows it: header values masked."""
        return {
            "format": self.format,
            "headers": {name: SECRET for name, _ in self.headers},
            "health_url": self.health_url,
            "health_check": self.health,
            "compression": self.compression,
            "options": _plain(self.settings()),
        }

    def to_state(self) -> dict[str, Any]:
        """As kept in state.json: header values in clear (the file is mode 0600)."""
        return {
            "format": self.format,
            "headers": dict(self.headers),
            "health_url": self.health_url,
            "health": self.health,
            "compression": self.compression,
            **_plain(dict(self.options)),
        }


def _plain(options: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}


BASE_KEYS = ("format", "headers", "health_url", "health", "compression")
KEYS = (*BASE_KEYS, *OPTION_KEYS)

DELIVERED = "delivered"
FAILED = "failed"
REFUSED = "refused"
# An answer that speaks record by record: some delivered, some to send again, some refused.
PARTIAL = "partial"


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
    fmt = changes.get("format", d.format)
    if fmt != d.format and "health" not in values and "health_url" not in values:
        # Only logdist's own analyzers have a /health beside their ingest URL: another
        # analyzer is judged by its forwards unless told where to probe.
        changes["health"] = "active" if fmt in PACKET_FORMATS else "passive"
    # A new format starts from its own defaults: the old one's options mean nothing to it.
    options = dict(d.options) if fmt == d.format else {}
    for name in OPTION_KEYS:
        if name in values:
            spec = option_spec(fmt, name)
            if values[name] is None:
                options.pop(name, None)
            else:
                options[name] = spec.check(name, values[name])
    changes["options"] = tuple(sorted(options.items()))
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
