"""An analyzer as the distributor sees it, and the `--analyzer` spec that names one."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from logdist.config.fields import check_positive, checked_id, require
from logdist.core.delivery import (
    OPTION_KEYS,
    Delivery,
    check_url_for,
    delivery_from,
    parse_header_line,
)
from logdist.core.registry import AdminState, Analyzer
from logdist.errors import ConfigError, InvalidRequest


@dataclass(frozen=True)
class AnalyzerRef:
    """An analyzer as the distributor sees it: where to send, its weight, and how."""

    id: str
    url: str
    weight: float = 1.0
    delivery: Delivery = field(default_factory=Delivery)

    def __post_init__(self) -> None:
        checked_id("analyzer", self.id)
        try:
            check_url_for(self.delivery.format, self.url)
        except InvalidRequest as exc:
            raise ConfigError(f"analyzer {self.id}: {exc.message}") from None
        check_positive(f"analyzer {self.id} weight", self.weight)


# `;KEY=` starts an option only for these keys, so a URL's own `;` stays in the URL.
_SPEC_OPTION = re.compile(
    r";(?=(?:format|header|health_url|health|compression|{})=)".format("|".join(OPTION_KEYS))
)
ANALYZER_SPEC = "ID=URL[@WEIGHT][;KEY=VALUE...]"


def parse_analyzer_ref(spec: str) -> AnalyzerRef:
    """`ID=URL[@WEIGHT][;KEY=VALUE...]`, e.g. `a1=http://127.0.0.1:9001/ingest@0.4`, or
    `a2=http://h:9200/ingest@1;format=ndjson;header=Authorization: Bearer x;health=passive`.

    KEY is format, header (`Name: value`, repeatable), health_url, health, compression, or
    an option of the format (docs/outputs.md), e.g. `;format=loki;labels=service,level`.
    """
    head, *options = _SPEC_OPTION.split(spec)
    aid, sep, rest = head.partition("=")
    require(bool(sep and aid and rest), f"--analyzer wants {ANALYZER_SPEC}, got {spec!r}")
    url, weight = rest, 1.0
    at_head, at, tail = rest.rpartition("@")
    # An '@' whose tail is not a number belongs to the URL itself.
    if at and _is_number(tail):
        weight, url = float(tail), at_head
    values: dict[str, object] = {}
    headers: dict[str, str] = {}
    try:
        for option in options:
            key, _, value = option.partition("=")
            if key == "header":
                name, text = parse_header_line(value)
                headers[name] = text
            else:
                values[key] = value
        if headers:
            values["headers"] = headers
        delivery = delivery_from(values)
    except InvalidRequest as exc:
        raise ConfigError(f"--analyzer {aid}: {exc.message}") from None
    return AnalyzerRef(aid, url, weight, delivery)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_analyzer_refs(specs: list[str]) -> tuple[AnalyzerRef, ...]:
    return tuple(map(parse_analyzer_ref, specs))


def analyzer_row(a: Analyzer | AnalyzerRef, state: AdminState | None = None) -> dict[str, Any]:
    """An analyzer as it is kept: in the state directory and in cluster mode's control
    bucket (one codec for both)."""
    admin = a.admin if isinstance(a, Analyzer) else (state or AdminState.ENABLED)
    return {
        "id": a.id,
        "url": a.url,
        "weight": a.weight,
        "state": admin.value,
        "delivery": a.delivery.to_state(),
    }


def analyzer_of(row: dict[str, Any]) -> tuple[AnalyzerRef, AdminState]:
    """A kept row back as the analyzer's settings and admin state (InvalidRequest, KeyError,
    TypeError or ValueError when it is not one)."""
    ref = AnalyzerRef(
        row["id"], row["url"], float(row["weight"]), delivery_from(row.get("delivery", {}))
    )
    return ref, AdminState(row["state"])
