"""Answers written as bytes by the lean front door: a whole JSON response, head and body, and
an error's; and what a request's Content-Type says its body is."""

from __future__ import annotations

import orjson

from logdist.errors import LogdistError
from logdist.net.web import error_headers, mime_kind

REASONS = {
    200: b"OK",
    202: b"Accepted",
    400: b"Bad Request",
    401: b"Unauthorized",
    408: b"Request Timeout",
    413: b"Payload Too Large",
    415: b"Unsupported Media Type",
    421: b"Misdirected Request",
    422: b"Unprocessable Entity",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
INTERNAL_ERROR = b'{"error":"internal error; see the daemon\'s log","code":"internal_error"}'


# Content-Type values seen, and what they mean (a client sends the same few over and over).
_KINDS: dict[bytes | None, str] = {None: "json", b"": "json"}


def content_kind(ctype: bytes | None) -> str:
    """`json` or `ndjson` from a Content-Type header value (none at all is JSON)."""
    kind = _KINDS.get(ctype)
    if kind is None:
        assert ctype is not None
        kind = mime_kind(ctype.split(b";", 1)[0].strip().lower().decode("latin-1"))
        if len(_KINDS) < 64:
            _KINDS[ctype] = kind
    return kind


def _head(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: " % (
        status,
        REASONS.get(status, b"Error"),
    )


_HEADS = {status: _head(status) for status in REASONS}


def response(
    status: int, body: bytes, headers: dict[str, str] | None = None, close: bool = False
) -> bytes:
    """A whole JSON answer, head and body, as bytes."""
    extra = (
        b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers.items()) if headers else b""
    )
    return b"%s%d\r\n%s%s\r\n%s" % (
        _HEADS.get(status) or _head(status),
        len(body),
        extra,
        b"Connection: close\r\n" if close else b"",
        body,
    )


def error(exc: LogdistError, close: bool) -> bytes:
    return response(exc.status, orjson.dumps(exc.to_json()), error_headers(exc), close=close)
