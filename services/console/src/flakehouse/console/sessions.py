"""Who is asking: the bearer token of a request, from its Authorization header (scripts, Grafana)
or from the sign-in cookie (the page). The cookie is http-only and same-site strict, so page
scripts cannot read it and other sites cannot make a browser send it; the token never appears in
a URL or in the browser's storage."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "flakehouse_session"
MAX_TOKEN_CHARS = 512


class NoToken(Exception):
    """The request carries no token, or a malformed Authorization header."""


def request_token(request: Request) -> str:
    """A Bearer header's token, else the cookie's. Another scheme (an Ingress's basic auth
    passed through) is not ours and leaves the cookie in charge."""
    header = request.headers.get("authorization")
    if header is not None and header.partition(" ")[0].lower() == "bearer":
        token = header.partition(" ")[2].strip()
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise NoToken("the Authorization header must be `Bearer <token>`")
        return token
    token = request.cookies.get(COOKIE, "")
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise NoToken("sign in with a token, or send `Authorization: Bearer <token>`")
    return token


def set_session(response: Response, token: str, *, secure: bool, max_age_s: int) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=max_age_s,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )


def clear_session(response: Response, *, secure: bool) -> None:
    response.delete_cookie(COOKIE, path="/", secure=secure, httponly=True, samesite="strict")
