"""The analyzers people run, as plain aiohttp services for `logdist bench` (k) and (g): each
takes its protocol's request, reads every body as the real one must (orjson for JSON, the
generated protobuf classes for OTLP), counts the records and answers as the real one does
when all is well. `GET /stats` gives the counts the bench reads.

    python -m logdist.bench.sinks --port 9101 --format elasticsearch
"""

from __future__ import annotations

import argparse

import orjson
from aiohttp import web
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from logdist.bench.foreign import COUNTS, stats

FORMATS = ("records", "elasticsearch", "loki", "otlp")
CREATED = b'{"create":{"_index":"logs","status":201,"result":"created"}}'
OTLP_OK = ExportLogsServiceResponse().SerializeToString()


def ndjson(body: bytes) -> list[object]:
    """Every line of an NDJSON body parsed, in one call (as a C service's parser would)."""
    return list(orjson.loads(b"[%s]" % body.strip().replace(b"\n", b",")))


def records(body: bytes) -> tuple[int, web.Response]:
    return len(ndjson(body)), web.Response(status=200)


def elasticsearch(body: bytes) -> tuple[int, web.Response]:
    count = len(ndjson(body)) // 2
    answer = b'{"took":1,"errors":false,"items":[%s]}' % b",".join([CREATED] * count)
    return count, web.Response(body=answer, content_type="application/json")


def loki(body: bytes) -> tuple[int, web.Response]:
    push = orjson.loads(body)
    return sum(len(s["values"]) for s in push["streams"]), web.Response(status=204)


def otlp(body: bytes) -> tuple[int, web.Response]:
    request = ExportLogsServiceRequest()
    request.ParseFromString(body)
    count = sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
    return count, web.Response(body=OTLP_OK, content_type="application/x-protobuf")


READERS = {"records": records, "elasticsearch": elasticsearch, "loki": loki, "otlp": otlp}


def make_app(fmt: str) -> web.Application:
    read = READERS[fmt]

    async def take(request: web.Request) -> web.Response:
        count, answer = read(await request.read())
        counts = request.app[COUNTS]
        counts["requests"] += 1
        counts["packets"] += 1
        counts["messages"] += count
        return answer

    app = web.Application(client_max_size=64 << 20)
    app[COUNTS] = {"requests": 0, "packets": 0, "messages": 0}
    app.router.add_get("/stats", stats)
    app.router.add_post("/{path:.*}", take)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--format", choices=FORMATS, required=True)
    args = parser.parse_args()
    web.run_app(
        make_app(args.format), host="127.0.0.1", port=args.port, print=None, access_log=None
    )


if __name__ == "__main__":
    main()
