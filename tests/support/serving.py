"""Serving an app in a test the way its daemon serves it."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestServer
from yarl import URL

from logdist.net import server


class FrontServer(TestServer):
    """The app served as `logdist … serve` serves it: through its front door, if it has one."""

    _listening: server.Listening | None = None

    async def start_server(self, loop: Any = None, **kwargs: Any) -> None:
        if self.runner:
            return
        self._listening = await server.listen(self.app, "127.0.0.1", 0)
        self.runner = self._listening.runner
        root = URL(self._listening.url)
        self.host, self.port, self.scheme = str(root.host), root.port, "http"
        self._root = root

    async def close(self) -> None:
        if self._listening is not None and not self.closed:
            await self._listening.stop()
            self._root, self.port, self._closed = None, None, True


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ln)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body
