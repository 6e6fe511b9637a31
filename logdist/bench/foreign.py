"""An analyzer that is not logdist's, for `logdist bench --analyzers foreign`.

A plain aiohttp service as an operator might run one: `POST /ingest` takes NDJSON
(`application/x-ndjson`), a JSON array or one JSON object, and parses every body with orjson
as a real service would before answering 200; `GET /health` says only that it is up (nothing
about batches: the distributor is told `format = "ndjson"`); `GET /stats` gives the counts
the bench reads. It does not dedupe: every packet that arrives is counted.

    python -m logdist.bench.foreign --port 9101
"""

from __future__ import annotations

import argparse
from typing import Any

import orjson
from aiohttp import web

COUNTS = web.AppKey("counts", dict[str, int])


async def ingest(request: web.Request) -> web.Response:
    body = await request.read()
    if request.content_type == "application/x-ndjson":
        packets: Any = [orjson.loads(line) for line in body.split(b"\n") if line]
    else:
        parsed = orjson.loads(body)
        packets = parsed if isinstance(parsed, list) else [parsed]
    counts = request.app[COUNTS]
    counts["requests"] += 1
    counts["packets"] += len(packets)
    counts["messages"] += sum(len(p["messages"]) for p in packets)
    return web.json_response({"took": len(packets)})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def stats(request: web.Request) -> web.Response:
    counts: dict[str, int] = request.app[COUNTS]
    return web.json_response({"duplicates": 0, **counts})


def make_app() -> web.Application:
    app = web.Application(client_max_size=64 << 20)
    app[COUNTS] = {"requests": 0, "packets": 0, "messages": 0}
    app.router.add_post("/ingest", ingest)
    app.router.add_get("/health", health)
    app.router.add_get("/stats", stats)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(make_app(), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
