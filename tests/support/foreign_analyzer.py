"""An analyzer that is not logdist's: a plain aiohttp service, as an operator might run one.

It takes packets on `POST /ingest` in whatever framing its Content-Type says (NDJSON, a JSON
array, or one JSON object), parses every body with orjson as a real service would, appends
each packet to `--output` before answering 200, and says nothing about batches on its health
route (which it may not have at all). It can want a bearer token, and it can refuse (400) any
body holding a word, as a search engine refuses a mapping conflict.

Test hooks: `GET /_requests` lists every request as it came (headers that matter, packet
ids), `POST /_accept` stops the refusals.

    python foreign_analyzer.py --port 0 [--token T] [--no-health] [--refuse WORD] --output F
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

import orjson
from aiohttp import web

REQUESTS = web.AppKey("requests", list[dict[str, Any]])
PROBES = web.AppKey("probes", list[dict[str, Any]])
SETTINGS = web.AppKey("settings", argparse.Namespace)


def authorized(request: web.Request) -> bool:
    token = request.app[SETTINGS].token
    return token is None or request.headers.get("Authorization") == f"Bearer {token}"


async def ingest(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    body = await request.read()  # a gzip body arrives decoded (aiohttp's auto_decompress)
    record: dict[str, Any] = {
        "content_type": request.headers.get("Content-Type"),
        "content_encoding": request.headers.get("Content-Encoding"),
        "authorization": request.headers.get("Authorization"),
        "ids": [],
    }
    request.app[REQUESTS].append(record)
    if not authorized(request):
        return web.json_response({"error": "missing or wrong bearer token"}, status=401)
    if settings.refuse and settings.refuse.encode() in body:
        return web.json_response(
            {"error": f"mapping conflict: field holds {settings.refuse!r}"}, status=400
        )
    try:
        if request.content_type == "application/x-ndjson":
            packets = [orjson.loads(line) for line in body.splitlines() if line.strip()]
        else:
            parsed = orjson.loads(body)
            packets = parsed if isinstance(parsed, list) else [parsed]
    except orjson.JSONDecodeError as exc:
        return web.json_response({"error": f"not JSON: {exc}"}, status=400)
    record["ids"] = [p["packetId"] for p in packets]
    with open(settings.output, "ab") as f:
        f.write(b"".join(orjson.dumps(p) + b"\n" for p in packets))
    return web.json_response({"took": len(packets)})


async def health(request: web.Request) -> web.Response:
    request.app[PROBES].append({"authorization": request.headers.get("Authorization")})
    if not authorized(request):
        return web.json_response({"error": "missing or wrong bearer token"}, status=401)
    return web.json_response({"status": "green"})


async def requests(request: web.Request) -> web.Response:
    return web.json_response({"requests": request.app[REQUESTS], "probes": request.app[PROBES]})


async def accept(request: web.Request) -> web.Response:
    request.app[SETTINGS].refuse = None
    return web.json_response({"refuse": None})


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token")
    parser.add_argument("--refuse")
    parser.add_argument("--no-health", action="store_true")
    parser.add_argument("--output", required=True)
    settings = parser.parse_args()
    app = web.Application(client_max_size=64 << 20)
    app[SETTINGS] = settings
    app[REQUESTS] = []
    app[PROBES] = []
    app.router.add_post("/ingest", ingest)
    if not settings.no_health:
        app.router.add_get("/health", health)
    app.router.add_get("/_requests", requests)
    app.router.add_post("/_accept", accept)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", settings.port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    port = runner.addresses[0][1]
    print(f"foreign analyzer listening url=http://127.0.0.1:{port}", flush=True)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
