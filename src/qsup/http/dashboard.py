"""The dashboard: one HTML page and its script and style, served from the package.

The page polls the JSON API every 2 s and builds its DOM with ``textContent`` only, so task
names, errors and logs are always shown as text. A strict Content-Security-Policy forbids
inline and remote scripts.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=HEADERS)


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC)
