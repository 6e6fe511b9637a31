"""The one call that makes an analyzer's request body from a batch's packets, by format:
what the distributor hands its parse processes (see docs/outputs.md)."""

from __future__ import annotations

from typing import Any

from logdist.formats.otlp import encode_request
from logdist.formats.outbound import encode_bulk, encode_hec, encode_loki, encode_records
from logdist.formats.syslog import encode_syslog


def encode(fmt: str, options: dict[str, Any], bodies: list[bytes], now_ns: int) -> tuple[Any, ...]:
    """The request body for `bodies` in `fmt` with the analyzer's options: (body, records)
    and, for Loki, each record's stream and timestamp."""
    if fmt == "records":
        return encode_records(bodies, options["timestamp_format"])
    if fmt == "elasticsearch":
        return encode_bulk(bodies, options["index"])
    if fmt == "splunk-hec":
        return encode_hec(
            bodies, options["index"], options["source"], options["sourcetype"], options["host"]
        )
    if fmt == "loki":
        return encode_loki(bodies, tuple(options["labels"]), now_ns)
    if fmt == "otlp":
        return encode_request(bodies, now_ns)
    if fmt == "syslog":
        return encode_syslog(bodies, options["facility"])
    raise ValueError(f"no encoder for format {fmt!r}")
