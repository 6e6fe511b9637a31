"""Recording fakes of the analyzers that cannot be installed here, answering exactly as
their documentation shows (each cites its page). Each keeps what it stored, by record, and
every request's records, so a test can tell delivered once from resent.

- Elasticsearch `_bulk`: https://www.elastic.co/guide/en/elasticsearch/reference/current/docs-bulk.html
  (200 with `errors` and one item per action; `create` of an existing `_id` is a 409
  version_conflict_engine_exception; a 429 item is es_rejected_execution_exception).
- Grafana Loki push: https://grafana.com/docs/loki/latest/reference/loki-http-api/#ingest-logs
  (204 on success; an entry too old is ignored while the rest are stored, and the answer is
  400 with one line per ignored entry and the total, as pkg/ingester/stream.go writes it;
  429 when rate limited, nothing stored).
- Splunk HEC: https://help.splunk.com/splunk-enterprise/get-data-in/collect-http-event-data/troubleshoot-http-event-collector
  (200 {"text":"Success","code":0}; 400 {"text":"Invalid data format","code":6,
  "invalid-event-number":N}, the events before N indexed; 503 {"text":"Server is busy","code":9}).
- OTLP/HTTP: https://opentelemetry.io/docs/specs/otlp/#partial-success-1 (200 with an
  ExportLogsServiceResponse whose partial_success counts the rejected records).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)


@dataclass
class Recorder:
    """What a fake stored (record key -> its record) and how often each key was sent."""

    stored: dict[str, Any] = field(default_factory=dict)
    sent: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    # Keys sent again after they were stored: must stay empty.
    resent_stored: list[str] = field(default_factory=list)
    # Answer the first N requests with the product's "busy" answer.
    busy: int = 0
    # Every request body as it came.
    bodies: list[bytes] = field(default_factory=list)

    def saw(self, key: str) -> None:
        if key in self.stored:
            self.resent_stored.append(key)
        self.sent[key] += 1


def key_of(packet_id: str, index: int) -> str:
    return f"{packet_id}:{index}"


# -- Elasticsearch ------------------------------------------------------------------------


def elasticsearch(
    rec: Recorder, refuse_word: str = "BADMAP", slow_word: str = "SLOW"
) -> web.Application:
    """Documents whose message holds `refuse_word` get a 400 mapping error; those holding
    `slow_word` a 429 the first time they come."""
    slowed: set[str] = set()

    async def bulk(request: web.Request) -> web.Response:
        rec.requests += 1
        lines = (await request.read()).splitlines()
        items = []
        errors = False
        for action_line, doc_line in zip(lines[::2], lines[1::2], strict=True):
            action = orjson.loads(action_line)["create"]
            doc = orjson.loads(doc_line)
            _id = action["_id"]
            if _id in rec.stored:  # sent again after it was stored: the create conflicts
                rec.saw(_id)
                status, error = (
                    409,
                    ("version_conflict_engine_exception", "document already exists"),
                )
            else:
                rec.saw(_id)
                if refuse_word in doc["message"]:
                    status, error = (
                        400,
                        ("mapper_parsing_exception", "failed to parse field [message]"),
                    )
                elif slow_word in doc["message"] and _id not in slowed:
                    slowed.add(_id)
                    status, error = 429, ("es_rejected_execution_exception", "rejected execution")
                else:
                    rec.stored[_id] = doc
                    status, error = 201, None
            result: dict[str, Any] = {"_index": action["_index"], "_id": _id, "status": status}
            if error:
                errors = True
                result["error"] = {"type": error[0], "reason": error[1]}
            else:
                result["result"] = "created"
            items.append({"create": result})
        return web.json_response({"took": 1, "errors": errors, "items": items})

    app = web.Application()
    app.router.add_post("/_bulk", bulk)
    return app


# -- Loki ---------------------------------------------------------------------------------


def go_time(ns: int) -> str:
    """Go's time.Time.String() of a UTC time, as Loki writes it in its answers."""
    seconds, rest = divmod(ns, 1_000_000_000)
    fraction = f".{rest:09d}".rstrip("0") if rest else ""
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%d %H:%M:%S}{fraction} +0000 UTC"


def rfc3339(ns: int) -> str:
    return f"{datetime.fromtimestamp(ns / 1e9, UTC):%Y-%m-%dT%H:%M:%SZ}"


def label_text(stream: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(stream.items())) + "}"


def loki(rec: Recorder, oldest_ns: int) -> web.Application:
    """Entries older than `oldest_ns` are ignored ("entry too far behind"), the rest stored."""

    async def push(request: web.Request) -> web.Response:
        rec.requests += 1
        if rec.busy:
            rec.busy -= 1
            return web.Response(
                status=429, text="Ingestion rate limit exceeded", headers={"Retry-After": "0"}
            )
        blocks = []
        for stream in orjson.loads(await request.read())["streams"]:
            ignored = []
            for ns, line, meta in stream["values"]:
                key = key_of(meta["packetId"], int(meta["index"]))
                rec.saw(key)
                if int(ns) < oldest_ns:
                    ignored.append(int(ns))
                else:
                    rec.stored[key] = {"stream": stream["stream"], "line": line, "meta": meta}
            if ignored:
                lines = [
                    f"entry with timestamp {go_time(ns)} ignored, reason: 'entry too far behind,"
                    f" entry timestamp is: {rfc3339(ns)}, oldest acceptable timestamp is:"
                    f" {rfc3339(oldest_ns)}',\n"
                    for ns in ignored
                ]
                lines.append(
                    f"user 'fake', total ignored: {len(ignored)} out of {len(stream['values'])}"
                    f" for stream: {label_text(stream['stream'])}"
                )
                blocks.append("".join(lines))
        if blocks:
            return web.Response(status=400, text="\n".join(blocks))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/loki/api/v1/push", push)
    return app


# -- Splunk HEC ---------------------------------------------------------------------------


def splunk_hec(rec: Recorder, refuse_word: str = "BADHEC") -> web.Application:
    """An event whose message holds `refuse_word` is invalid: HEC stops there."""

    async def event(request: web.Request) -> web.Response:
        rec.requests += 1
        if request.headers.get("Authorization") != "Splunk hec-token":
            return web.json_response({"text": "Invalid authorization", "code": 3}, status=401)
        if rec.busy:
            rec.busy -= 1
            return web.json_response({"text": "Server is busy", "code": 9}, status=503)
        for n, line in enumerate((await request.read()).splitlines()):
            event = orjson.loads(line)
            meta = event["event"]["logdist"]
            key = key_of(meta["packetId"], meta["index"])
            rec.saw(key)
            if refuse_word in event["event"]["message"]:
                return web.json_response(
                    {"text": "Invalid data format", "code": 6, "invalid-event-number": n},
                    status=400,
                )
            rec.stored[key] = event
        return web.json_response({"text": "Success", "code": 0})

    app = web.Application()
    app.router.add_post("/services/collector/event", event)
    return app


# -- OTLP ---------------------------------------------------------------------------------


def otlp(rec: Recorder, refuse_word: str = "BADOTLP") -> web.Application:
    """Records whose body holds `refuse_word` are rejected, counted in partial_success."""

    async def logs(request: web.Request) -> web.Response:
        rec.requests += 1
        if rec.busy:
            rec.busy -= 1
            return web.Response(status=503, headers={"Retry-After": "0"})
        export = ExportLogsServiceRequest()
        raw = await request.read()
        rec.bodies.append(raw)
        export.ParseFromString(raw)
        rejected = 0
        for rl in export.resource_logs:
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    attrs = {kv.key: kv.value for kv in r.attributes}
                    if "logdist.packet_id" in attrs:  # converted by logdist
                        pid = attrs["logdist.packet_id"].string_value
                        key = key_of(pid, attrs["logdist.index"].int_value)
                    else:  # an exporter's own record, passed through: its body names it
                        key = r.body.string_value
                    rec.saw(key)
                    if refuse_word in r.body.string_value:
                        rejected += 1
                    else:
                        rec.stored[key] = r
        answer = ExportLogsServiceResponse()
        if rejected:
            answer.partial_success.rejected_log_records = rejected
            answer.partial_success.error_message = f"{rejected} records refused"
        return web.Response(body=answer.SerializeToString(), content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/logs", logs)
    return app
