"""The pages and their assets, all served from this package: no CDN, no font or script from
anywhere else, which the Content-Security-Policy holds the browser to."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
PAGES = {
    "/": "index.html",
    "/flaky": "flaky.html",
    "/history": "history.html",
    "/signatures": "signatures.html",
}
# ECharts sets styles on the elements it draws, hence 'unsafe-inline' for styles only.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # A permalink carries its SQL in the URL: never send it to another site.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _page(path: str, filename: str) -> Route:
    async def page(request: Request) -> Response:
        return FileResponse(
            STATIC / filename, media_type="text/html", headers={"Cache-Control": "no-cache"}
        )

    return Route(path, page, methods=["GET"])


def page_routes() -> list[BaseRoute]:
    return [
        *(_page(path, filename) for path, filename in PAGES.items()),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
