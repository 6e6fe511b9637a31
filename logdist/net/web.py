"""What every daemon's HTTP layer shares: JSON responses, JSON errors, bounded body reads."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from logdist.core.checks import origin_of
from logdist.errors import (
    Backpressure,
    Forbidden,
    InvalidRequest,
    LogdistError,
    PayloadTooLarge,
    ReadOnly,
    RequestTimeout,
    Throttled,
    Unauthorized,
    UnsupportedMediaType,
)
from logdist.formats.packet import decode_json
from logdist.net.hosts import HostRule

log = logging.getLogger("logdist.http")

JSON = "application/json"
NDJSON = "application/x-ndjson"
NDJSON_TYPES = frozenset(
    {NDJSON, "application/ndjson", "application/jsonl", "application/x-jsonlines"}
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type=JSON, headers=headers)


def error_headers(exc: LogdistError) -> dict[str, str] | None:
    """The headers an error needs beside its JSON body (the connection's own aside)."""
    if isinstance(exc, Backpressure | Throttled):
        return {"Retry-After": str(max(1, round(exc.retry_after)))}
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": 'Bearer realm="logdist"'}
    return None


def error_response(exc: LogdistError) -> web.Response:
    headers = error_headers(exc)
    if isinstance(exc, RequestTimeout):
        headers = {"Connection": "close"}
    return json_response(exc.to_json(), status=exc.status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as `{"error": ..., "code": ...}` JSON with its status, no traceback."""
    try:
        return await handler(request)
    except LogdistError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        if exc.status == 404:
            message = f"no route {request.method} {request.path}"
        elif exc.status == 405:
            message = f"method {request.method} not allowed on {request.path}"
        elif exc.status == 413:
            message = "request body too large"
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return json_response({"error": message, "code": code}, status=exc.status, headers=headers)
    except Exception:
        log.exception("event=handler_error method=%s path=%s", request.method, request.path)
        return json_response(
            {"error": "internal error; see the daemon's log", "code": "internal_error"}, status=500
        )


# Seconds a client may pause while sending a body before it is refused with 408.
BODY_IDLE_TIMEOUT = 30.0


async def read_body(request: web.Request, limit: int, idle_timeout: float | None = None) -> bytes:
    """The request body, refusing with 413 as soon as it is known to exceed `limit` bytes.

    A client that stops sending for `idle_timeout` seconds gets 408 and its connection closed,
    so a stalled sender holds nothing but its own socket.
    """
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(
            f"body of {length} bytes exceeds the limit of {limit} bytes", {"limit": limit}
        )
    if request.content.is_eof():
        # The whole body came with the headers (the usual small packet): no waiting to bound.
        body = await request.content.read()
        if len(body) > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes", {"limit": limit})
        return body
    idle = BODY_IDLE_TIMEOUT if idle_timeout is None else idle_timeout
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            async with asyncio.timeout(idle):
                chunk = await request.content.readany()
        except TimeoutError:
            raise RequestTimeout(
                f"no body bytes for {idle:g} s; send the whole body promptly"
            ) from None
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes", {"limit": limit})
        chunks.append(chunk)
    return b"".join(chunks)


def mime_kind(mime: str) -> str:
    """`json` or `ndjson` for a media type (lower case, no parameters); anything else is 415."""
    if mime == JSON or (mime.startswith("application/") and mime.endswith("+json")):
        return "json"
    if mime in NDJSON_TYPES:
        return "ndjson"
    raise UnsupportedMediaType(
        f"Content-Type {mime!r} is not accepted; send application/json or application/x-ndjson",
    )


def body_kind(request: web.Request) -> str:
    """`json` or `ndjson` from the Content-Type; none at all is taken as JSON."""
    return mime_kind(request.content_type if request.headers.get("Content-Type") else JSON)


async def read_json_object(request: web.Request, limit: int = 64 * 1024) -> dict[str, Any]:
    """A small admin body: a JSON object (an empty body, whatever its type, is `{}`)."""
    body = await read_body(request, limit)
    if not body.strip():
        return {}
    if request.headers.get("Content-Type") and body_kind(request) != "json":
        raise UnsupportedMediaType("send the body as application/json")
    obj = decode_json(body)
    if not isinstance(obj, dict):
        raise InvalidRequest("body must be a JSON object")
    return obj


def require(obj: dict[str, Any], key: str) -> Any:
    if key not in obj:
        raise InvalidRequest(f"body needs the field {key!r}")
    return obj[key]


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"connect failed: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def bearer_matches(authorization: bytes | None, token: bytes, fallback: bytes = b"") -> bool:
    """An `Authorization: Bearer` header presents `token` (compared in constant time); with no
    bearer header, `fallback` is what was presented. Both servers check tokens here."""
    presented = fallback
    if authorization and authorization[:7].lower() == b"bearer ":
        presented = authorization[7:].strip()
    return hmac.compare_digest(presented, token)


def bearer_ok(request: web.Request, token: str) -> bool:
    """The request carries `token` as `Authorization: Bearer`, or for a WebSocket as `?token=`."""
    header = request.headers.get("Authorization")
    query = request.query.get("token", "") if request.path.startswith("/ws/") else ""
    return bearer_matches(
        header.encode("utf-8", "replace") if header else None,
        token.encode(),
        query.encode("utf-8", "replace"),
    )


READS = frozenset({"GET", "HEAD"})


def auth_middleware(
    admin_token: str | None,
    ingest_token: str | None,
    ingest_paths: frozenset[str],
    public: Callable[[str], bool],
    read_token: str | None = None,
) -> Middleware:
    """Ingest paths need `ingest_token`, public ones nothing, every other route `admin_token`
    — or, to read (GET), `read_token`."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if not public(path):
            if path in ingest_paths:
                token, what = ingest_token, "ingest"
            else:
                token, what = admin_token, "admin"
            if token is not None and not bearer_ok(request, token):
                if what == "admin" and read_token is not None and bearer_ok(request, read_token):
                    if request.method in READS:
                        return await handler(request)
                    raise ReadOnly(
                        "the read token only reads: this route changes things and needs the"
                        " admin token"
                    )
                raise Unauthorized(
                    f"this route needs the {what} token as 'Authorization: Bearer <token>'"
                )
        return await handler(request)

    return middleware


def host_middleware(rule: HostRule) -> Middleware:
    """Refuse (421) a request whose `Host` is not a name this daemon answers to
    (`net.hosts`: a page on a rebound name cannot drive it), logged once a name."""
    seen: set[str] = set()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host")
        if host is not None and not rule.allows(host):
            if len(seen) < 100 and host not in seen:
                seen.add(host)
                log.warning(
                    "event=host_refused host=%r method=%s path=%s",
                    host,
                    request.method,
                    request.path,
                )
            raise rule.refusal(host)
        return await handler(request)

    return middleware


def origin_middleware(
    exempt: Callable[[str], bool], allowed: tuple[str, ...] = (), hint: str = ""
) -> Middleware:
    """Refuse (403) a request whose `Origin` header names another site, as Grafana and Jupyter
    do: a web page in the operator's browser could otherwise drive the admin and control
    routes with a plain form. Same origin means the `Origin` equals this daemon's address as
    the request's `Host` says (the dashboard's own requests); `allowed` adds others (a
    reverse proxy's public address). A request without `Origin` (ctl, curl, emitters) and the
    `exempt` paths (ingest, /health, static files) are not checked."""
    extra = frozenset(allowed)
    seen: set[str] = set()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and not exempt(request.path):
            own = origin_of(f"{request.scheme}://{request.host}")
            theirs = origin_of(origin)
            if theirs is None or (theirs != own and theirs not in extra):
                if len(seen) < 100 and origin not in seen:  # once an origin: no log flood
                    seen.add(origin)
                    log.warning(
                        "event=cross_origin_refused origin=%r method=%s path=%s",
                        origin,
                        request.method,
                        request.path,
                    )
                raise Forbidden(
                    f"cross-origin request refused: Origin {origin!r} is not this daemon's own"
                    f" ({own}); a page from another site may not call {request.path}{hint}"
                )
        return await handler(request)

    return middleware
