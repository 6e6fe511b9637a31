"""The web dashboard at `/`: static files shipped inside the package, no build step, no CDN."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

UI = Path(__file__).resolve().parent / "ui"


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(UI / "index.html", headers={"Cache-Control": "no-cache"})


def add_dashboard(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_static("/ui/", UI, follow_symlinks=False)
