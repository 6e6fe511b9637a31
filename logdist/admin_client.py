"""The one typed client of the distributor's admin API; `ctl`, `tail` and `top` use it."""

from __future__ import annotations

import asyncio
import errno
import ssl
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson

from logdist.net.web import describe_error

DEFAULT_URL = "http://127.0.0.1:8000"


class ClientFailure(Exception):
    """A call that did not succeed; `exit_code` is what the CLI exits with."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Refused(ClientFailure):
    """The distributor answered with an error (4xx/5xx); `message` is its reason."""

    exit_code = 1

    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.body = body


class Unreachable(ClientFailure):
    """No answer from the distributor at all."""

    exit_code = 3


def _seg(value: str) -> str:
    return quote(value, safe="")


class AdminClient:
    """`async with AdminClient(url, token) as c: await c.status()`."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        timeout: float = 15.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.tls = tls  # what an https:// distributor is verified with; None: the system's
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AdminClient:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._session = aiohttp.ClientSession(
            headers=headers,
            timeout=self._timeout,
            connector=aiohttp.TCPConnector(ssl=self.tls or True),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use AdminClient in `async with`"
        return self._session

    def _unreachable(self, exc: BaseException) -> Unreachable:
        """The distributor could not be reached; when an https:// one dropped the connection
        at once, it may want a client certificate (mutual TLS refuses in the handshake,
        without a word): the message says so."""
        message = f"cannot reach the distributor at {self.url}: {describe_error(exc)}"
        reset = isinstance(exc, aiohttp.ClientOSError) and exc.errno == errno.ECONNRESET
        dropped = isinstance(exc, aiohttp.ServerDisconnectedError) or reset
        if self.url.startswith("https://") and dropped:
            message += " (if it asks for a client certificate, give --client-cert and --client-key)"
        return Unreachable(message)

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else None
        try:
            async with self.session.request(
                method, self.url + path, data=data, headers=headers
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._unreachable(exc) from None
        try:
            parsed = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            parsed = None
        if not 200 <= status < 300:
            reason = parsed.get("error") if isinstance(parsed, dict) else None
            raise Refused(
                status,
                str(reason or raw[:200].decode(errors="replace") or "no reason given"),
                parsed,
            )
        if parsed is None and raw:
            raise Refused(
                status, f"{self.url}{path} did not answer JSON; is this a logdist distributor?"
            )
        return parsed

    # -- views ----------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/status")
        return result

    async def registry(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call("GET", "/registry")
        return result

    async def metrics_text(self) -> str:
        try:
            async with self.session.get(self.url + "/metrics") as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise Refused(resp.status, text[:200])
                return text
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._unreachable(exc) from None

    # -- analyzers ------------------------------------------------------------------------

    async def add(self, aid: str, url: str, weight: float = 1.0, **delivery: Any) -> dict[str, Any]:
        """`delivery`: format, headers (a dict), health_url, health, compression, and the
        format's options (docs/outputs.md)."""
        body = {"id": aid, "url": url, "weight": weight, **delivery}
        result: dict[str, Any] = await self._call("POST", "/registry/add", body)
        return result

    async def configure(self, aid: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change an analyzer's delivery settings (see POST /analyzer/{aid}/config)."""
        result: dict[str, Any] = await self._call("POST", f"/analyzer/{_seg(aid)}/config", changes)
        return result

    async def remove(self, aid: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("DELETE", f"/registry/{_seg(aid)}")
        return result

    async def set_state(self, aid: str, action: str) -> dict[str, Any]:
        """`action` is enable, disable or drain."""
        result: dict[str, Any] = await self._call("POST", f"/analyzer/{_seg(aid)}/{action}")
        return result

    async def weight(self, aid: str, weight: float) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST", f"/analyzer/{_seg(aid)}/weight", {"weight": weight}
        )
        return result

    # -- dead letters ---------------------------------------------------------------------

    async def dead_letters(self, limit: int = 1000) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", f"/dead-letters?limit={limit}")
        return result

    async def dead_letter(self, letter_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", f"/dead-letters/{_seg(letter_id)}")
        return result

    async def replay_dead_letters(self, ids: list[str] | None = None) -> dict[str, Any]:
        body = {"ids": ids} if ids else {}
        result: dict[str, Any] = await self._call("POST", "/dead-letters/replay", body)
        return result

    async def purge_dead_letters(self, ids: list[str] | None = None) -> dict[str, Any]:
        body = {"ids": ids} if ids else {}
        result: dict[str, Any] = await self._call("POST", "/dead-letters/purge", body)
        return result

    # -- emitters -------------------------------------------------------------------------

    async def emitter(self, eid: str, action: str, rps: float | None = None) -> dict[str, Any]:
        """`action` is pause, resume or rate (with `rps`)."""
        body = {"rps": rps} if action == "rate" else None
        result: dict[str, Any] = await self._call("POST", f"/emitter/{_seg(eid)}/{action}", body)
        return result

    async def analyzers(
        self,
        q: str | None = None,
        health: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page of analyzers by id: `{"analyzers", "total", "next"}`."""
        return await self._page("/registry", limit, cursor, q=q, health=health)

    async def emitters(
        self,
        q: str | None = None,
        state: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        sort: str | None = None,
    ) -> dict[str, Any]:
        """One page of emitters by id (or `sort="throttled"`): `{"emitters", "total", "next"}`."""
        return await self._page("/emitters", limit, cursor, q=q, state=state, sort=sort)

    async def _page(
        self, path: str, limit: int, cursor: str | None, **filters: str | None
    ) -> dict[str, Any]:
        params = {"limit": str(limit)}
        params.update({k: v for k, v in {**filters, "cursor": cursor}.items() if v})
        result: dict[str, Any] = await self._call("GET", f"{path}?{urlencode(params)}")
        return result

    async def emitter_metrics(self, eid: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", f"/emitter/{_seg(eid)}/metrics")
        return result

    # -- per-emitter limits ---------------------------------------------------------------

    async def limits(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", "/limits")
        return result

    async def set_limit(self, pattern: str, rate: float, burst: float | None) -> dict[str, Any]:
        body: dict[str, Any] = {"rate": rate} if burst is None else {"rate": rate, "burst": burst}
        result: dict[str, Any] = await self._call("PUT", f"/limits/{_seg(pattern)}", body)
        return result

    async def clear_limit(self, pattern: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("DELETE", f"/limits/{_seg(pattern)}")
        return result

    # -- stored logs ----------------------------------------------------------------------

    async def search(self, **params: str | None) -> dict[str, Any]:
        """One page of stored messages (see GET /logs/search): `{"items", "next", "partial"}`."""
        query = urlencode({k: v for k, v in params.items() if v is not None})
        result: dict[str, Any] = await self._call("GET", f"/logs/search?{query}")
        return result

    async def search_all(self, limit: int | None, **params: str | None) -> AsyncIterator[Any]:
        """Every stored message matching `params` (at most `limit`), page after page; a
        page's `partial` (analyzers that did not answer) is yielded as a list before it."""
        cursor: str | None = None
        left = limit
        while left is None or left > 0:
            size = 1000 if left is None else min(left, 1000)
            page = await self.search(**params, limit=str(size), cursor=cursor)
            if page["partial"]:
                yield page["partial"]
            for item in page["items"]:
                yield item
            if left is not None:
                left -= len(page["items"])
            cursor = page["next"]
            if cursor is None:
                return

    # -- routed logs ----------------------------------------------------------------------

    async def logs(
        self,
        n: int = 100,
        follow: bool = False,
        analyzer: str | None = None,
        emitter: str | None = None,
        level: str | None = None,
        opened: asyncio.Event | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """The last `n` routed messages, then (with `follow`) each new one until closed;
        `opened` is set once the stream is open (before its first message)."""
        params = {"n": str(n), "follow": "1" if follow else "0"}
        params.update(
            {k: v for k, v in (("analyzer", analyzer), ("emitter", emitter), ("level", level)) if v}
        )
        try:
            ws = await self.session.ws_connect(
                self.url + "/ws/logs", params=params, timeout=aiohttp.ClientWSTimeout(ws_close=5)
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise Refused(exc.status, exc.message or "WebSocket refused") from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._unreachable(exc) from None
        if opened is not None:
            opened.set()
        async with ws:
            async for msg in ws:
                if msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                    yield orjson.loads(msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    raise Unreachable(f"the log stream broke: {ws.exception()}")
