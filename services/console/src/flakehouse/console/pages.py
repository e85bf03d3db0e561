"""The pages and their assets, all served from this package: no CDN, no font or script from
anywhere else, which the Content-Security-Policy holds the browser to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template
from textwrap import indent

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class Page:
    path: str
    name: str
    """Its content (static/pages/NAME.html) and its script (static/js/pages/NAME.js)."""
    title: str


PAGES = (
    Page("/", "query", "Query"),
    Page("/flaky", "flaky", "Flaky tests"),
    Page("/history", "history", "Test history"),
    Page("/signatures", "signatures", "Failure signatures"),
)
PAGE_PATHS = frozenset(page.path for page in PAGES)
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


def render(page: Page) -> str:
    """The page inside the layout every page shares: the header with its navigation (this page
    marked current), the sign-in form, and the page's own content and script."""
    current = ' aria-current="page"'
    nav = "\n".join(
        f'      <li><a href="{p.path}" data-page="{p.path}"{current if p == page else ""}>'
        f"{p.title}</a></li>"
        for p in PAGES
    )
    content = (STATIC / "pages" / f"{page.name}.html").read_text()
    return Template((STATIC / "layout.html").read_text()).substitute(
        title=page.title, name=page.name, nav=nav, content=indent(content, "    ")
    )


def _page(page: Page) -> Route:
    html = render(page)

    async def endpoint(request: Request) -> Response:
        return HTMLResponse(html, headers={"Cache-Control": "no-cache"})

    return Route(page.path, endpoint, methods=["GET"])


def page_routes() -> list[BaseRoute]:
    return [
        *(_page(page) for page in PAGES),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
