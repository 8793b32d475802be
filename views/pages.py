"""The trader and admin web pages: plain files under views/static/, served by every worker.

No build step and nothing fetched from elsewhere: the pages talk to the same HTTP API as any
client, with the token the user pastes once (kept in the tab's `sessionStorage`). `/app/` is the
trader's page, `/app/admin` the admin's; `/app/static/<file>` their scripts and styles.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aiohttp import web

from views.context import WebContext
from views.http import page

STATIC = Path(__file__).resolve().parent / "static"
_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,40}\.(?:js|css|html|svg)")
_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
}
# The pages load nothing from elsewhere: scripts, styles and connections stay on this origin.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def static_file(name: str) -> web.Response:
    """A file of views/static by its plain name (no paths); 404 for anything else."""
    if _NAME_RE.fullmatch(name) is None:
        raise web.HTTPNotFound()
    path = STATIC / name
    if not path.is_file():
        raise web.HTTPNotFound()
    return web.Response(
        body=path.read_bytes(),
        content_type=_TYPES[path.suffix],
        charset="utf-8",
        headers=_HEADERS,
    )


def register(ctx: WebContext) -> None:
    app = ctx.ff.app

    @page(app, "/app")
    async def app_root(self: Any, request: web.Request) -> web.Response:
        raise web.HTTPFound("/app/")

    @page(app, "/app/")
    async def trader_page(self: Any, request: web.Request) -> web.Response:
        return static_file("trader.html")

    @page(app, "/app/admin")
    async def admin_page(self: Any, request: web.Request) -> web.Response:
        return static_file("admin.html")

    @page(app, "/app/static/{name}")
    async def asset(self: Any, request: web.Request, name: str) -> web.Response:
        return static_file(name)
