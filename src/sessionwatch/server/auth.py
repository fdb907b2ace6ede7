"""Tokens and roles: who a request is, what it may do, signing in and out,
and slowing down guessers (DESIGN.md, Security; roles in sessionwatch/access.py).

A request presents a token as ``Authorization: Bearer <token>``, the sign-in
cookie, or ``?token=`` (kept for scripts; the page uses the cookie, which an
EventSource sends too). The token is the ``--token`` (admin) or a named token
from the store (``sessionwatch token create``), looked up by its SHA-256 in a
dict the :class:`TokenBook` refreshes from the store every
:data:`REFRESH_S` seconds (a new or revoked token counts within 5 s; no
query per request). With any token configured, the ``--token`` or a live
named one, nothing but :data:`PUBLIC` answers without one. An empty token is
never a token.

Every route's role is in one table, :data:`ROUTE_ROLES`; :func:`guard` puts a
:class:`RoleCheck` in front of each route (a route missing from the table is
admin only: a new route is refused until someone gives it its role). No
token: 401; a role too low: 403 naming the role needed.

The sign-in cookie holds the token itself, HttpOnly (the page's scripts never
see it): the identity and role come from it on each request, so a revoked
token's cookie stops working with it (a cookie holding a role would need
signing, and would outlive the revocation). ``GET /auth`` tells the page the
role and name.

Wrong tokens are throttled per client address (issue 8, item 13: 932 wrong
sign-ins a second were answered without a pause): each address has a bucket
of :data:`BURST` failures that refills at :data:`PER_MINUTE` a minute. While
it is empty, every credential from that address gets 429 with
``Retry-After``, right or wrong: checking a right one would tell a guesser
that it had found the token at full speed.
"""

from __future__ import annotations

import copy

import hmac
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Final

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sessionwatch.access import ADMIN, LOCAL, NAMED_ROLES, ROLES, SCOPE_KEY, Identity, Role, hash_token, identity_of, refusal
from sessionwatch.errors import ApiError
from sessionwatch.server.api import read_json
from sessionwatch.server.fields import Body, Text, takes
from sessionwatch.store.base import TokenStore

log = logging.getLogger(__name__)

#: The sign-in cookie: the token, HttpOnly, SameSite=Strict.
COOKIE = "sessionwatch_token"

#: Failures an address may make at once...
BURST = 10
#: ...and how many more it gets each minute after that.
PER_MINUTE = 10
#: Addresses remembered; the least recently seen is forgotten first.
MAX_CLIENTS = 10_000
#: How often the named tokens are read again from the store (a change counts within 5 s).
REFRESH_S: Final = 2.0
#: A token's last use is written at most this often (and at shutdown).
TOUCH_S: Final = 60.0

#: Paths that answer without a token: the page, liveness, sign-in, static files.
PUBLIC: Final = frozenset({"/", "/healthz", "/auth", "/login", "/logout", "/favicon.ico"})

#: The role each route needs (DESIGN.md, HTTP), by method and path as routed.
#: ``DELETE /sessions/{id}`` needs agent for a Panel session (a tracker
#: deregistering itself) and operator for a managed one (server/api.py).
ROUTE_ROLES: Final[dict[tuple[str, str], Role]] = {
    ("GET", "/stream"): "viewer",  # served ahead of Starlette (server/app.py): any token
    ("GET", "/all"): "viewer",
    ("GET", "/sessions"): "viewer",
    ("GET", "/sessions/{session_id}"): "viewer",
    ("GET", "/sessions/{session_id}/logs"): "viewer",
    ("GET", "/stats"): "viewer",
    ("GET", "/metrics"): "viewer",
    ("GET", "/openapi.json"): "viewer",
    ("GET", "/away"): "viewer",
    ("GET", "/agents"): "viewer",
    ("POST", "/hooks"): "agent",
    ("POST", "/sessions"): "agent",
    ("POST", "/sessions/{session_id}/heartbeat"): "agent",
    ("POST", "/heartbeats"): "agent",
    ("PUT", "/sessions/{session_id}/status"): "agent",
    ("DELETE", "/sessions/{session_id}"): "agent",
    ("POST", "/runs"): "agent",
    ("POST", "/agents/push"): "agent",
    ("GET", "/agents/{agent}/commands"): "agent",  # an agent's long poll (sessionwatch/agents)
    ("POST", "/refresh"): "operator",
    ("POST", "/sessions/{session_id}/approve"): "operator",
    ("PUT", "/away"): "operator",
    ("PUT", "/sessions/{session_id}/budget"): "operator",
    ("POST", "/managed"): "operator",
    ("POST", "/sessions/{session_id}/messages"): "operator",
    ("POST", "/sessions/{session_id}/interrupt"): "operator",
    ("POST", "/sessions/{session_id}/stop"): "operator",
    ("POST", "/sessions/{session_id}/resume"): "operator",
    ("POST", "/sessions/{session_id}/kill"): "operator",
    ("DELETE", "/sessions/stale"): "operator",
}


class Throttle:
    """A token bucket of failed sign-ins per client address."""

    def __init__(
        self,
        burst: int = BURST,
        per_minute: float = PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.burst = burst
        self.rate = per_minute / 60.0
        self.clock = clock
        self.max_clients = max_clients
        #: address → (failures it may still make, when that was computed)
        self.buckets: dict[str, tuple[float, float]] = {}

    def _level(self, client: str) -> float:
        entry = self.buckets.get(client)
        if entry is None:
            return float(self.burst)
        left, at = entry
        return min(float(self.burst), left + (self.clock() - at) * self.rate)

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again; 0 if it may now."""
        left = self._level(client)
        return 0.0 if left >= 1 else (1 - left) / self.rate

    def failed(self, client: str) -> None:
        """Count one wrong token from ``client``."""
        left = self._level(client) - 1
        self.buckets.pop(client, None)
        self.buckets[client] = (left, self.clock())
        while len(self.buckets) > self.max_clients:
            del self.buckets[next(iter(self.buckets))]


def client_of(request: Request) -> str:
    return request.client.host if request.client else ""


def presented(request: Request) -> list[str]:
    """Every token the request carries; empty ones are none."""
    header = request.headers.get("authorization", "")
    candidates = [
        header[7:].strip() if header[:7].lower() == "bearer " else None,
        request.cookies.get(COOKIE),
        request.query_params.get("token"),
    ]
    return [c for c in candidates if c]


def token_ok(request: Request, token: str) -> bool:
    """Bearer header, cookie, or ``?token=``; never an empty token."""
    if not token:
        return False
    return any(hmac.compare_digest(c.encode(), token.encode()) for c in presented(request))


class TokenBook:
    """The tokens this server accepts: the ``--token`` (admin) and the live
    named tokens of the store, by hash, refreshed every :data:`REFRESH_S`;
    the last use of each named token, written in batches (:data:`TOUCH_S`)."""

    def __init__(self, admin: str | None, clock: Callable[[], float] = time.time) -> None:
        self.admin = admin
        self.clock = clock
        #: SHA-256 hex → who; revoked tokens are not here
        self.named: dict[str, Identity] = {}
        #: SHA-256 hex → last use not yet written / last written
        self.used: dict[str, float] = {}
        self.written: dict[str, float] = {}

    @property
    def required(self) -> bool:
        """Whether any token is configured (then requests need one)."""
        return self.admin is not None or bool(self.named)

    def identify(self, token: str) -> Identity | None:
        """Who ``token`` is, or None; never an empty token."""
        if not token:
            return None
        if self.admin is not None and hmac.compare_digest(token.encode(), self.admin.encode()):
            return ADMIN
        h = hash_token(token)
        ident = self.named.get(h)
        if ident is not None:
            self.used[h] = self.clock()
        return ident

    async def load(self, store: TokenStore) -> None:
        rows = await store.tokens()
        self.named = {
            r.hash: Identity(r.name, r.role)
            for r in rows
            if r.revoked_at is None and r.role in NAMED_ROLES
        }

    async def touch(self, store: TokenStore, *, everything: bool = False) -> None:
        """Write the last uses older than :data:`TOUCH_S` since the last write (all of them at shutdown)."""
        due = {h: t for h, t in self.used.items() if everything or t - self.written.get(h, -TOUCH_S) >= TOUCH_S}
        if not due:
            return
        await store.token_touch(due)
        for h, t in due.items():
            self.written[h] = t
            if self.used.get(h) == t:
                del self.used[h]

    async def run(self, store: TokenStore) -> None:
        """Refresh from the store and write last uses, until cancelled (the app's lifespan)."""
        while True:
            await anyio.sleep(REFRESH_S)
            try:
                await self.load(store)
                await self.touch(store)
            except Exception:  # noqa: BLE001 - a busy or closing database: the next round tries again
                log.warning("reading the named tokens failed; keeping the ones known", exc_info=True)


def unauthorized() -> JSONResponse:
    return JSONResponse(
        {"error": "this server needs a token: Authorization: Bearer <token>"},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


def forbidden(ident: Identity, needed: Role, what: str) -> JSONResponse:
    return JSONResponse({"error": refusal(ident, needed, what), "role": needed}, status_code=403)


def too_many(wait_s: float) -> JSONResponse:
    seconds = max(1, math.ceil(wait_s))
    return JSONResponse(
        {"error": f"too many wrong tokens from this address; try again in {seconds} s"},
        status_code=429,
        headers={"Retry-After": str(seconds)},
    )


def authenticate(request: Request, book: TokenBook, throttle: Throttle) -> Identity | Response:
    """Who the request is (:data:`~sessionwatch.access.LOCAL` with no token
    configured), or the answer to send (401 or 429)."""
    if not book.required:
        return LOCAL
    tokens = presented(request)
    if not tokens:
        return unauthorized()
    client = client_of(request)
    wait = throttle.retry_after(client)
    if wait > 0:
        return too_many(wait)
    for token in tokens:
        ident = book.identify(token)
        if ident is not None:
            return ident
    throttle.failed(client)
    return unauthorized()


class TokenMiddleware:
    """With any token configured, every path but :data:`PUBLIC` (and
    ``/static/``) needs one; the identity goes into the scope for the
    routes' :class:`RoleCheck` and for the audit (``control/api.py`` ``actor``)."""

    def __init__(self, app: ASGIApp, book: TokenBook, throttle: Throttle) -> None:
        self.app = app
        self.book = book
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.book.required:
            scope[SCOPE_KEY] = LOCAL
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in PUBLIC or path.startswith("/static/"):
            await self.app(scope, receive, send)
            return
        who = authenticate(Request(scope), self.book, self.throttle)
        if isinstance(who, Response):
            await who(scope, receive, send)
            return
        scope[SCOPE_KEY] = who
        await self.app(scope, receive, send)


class RoleCheck:
    """In front of one route: 403 unless the request's token has the route's role."""

    def __init__(self, app: ASGIApp, role: Role, what: str) -> None:
        self.app = app
        self.role = role
        self.what = what

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ident = identity_of(scope)
        if ident is None:
            await unauthorized()(scope, receive, send)
        elif not ident.allows(self.role):
            await forbidden(ident, self.role, self.what)(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def route_role(method: str, path: str) -> Role:
    """The role a route needs: :data:`ROUTE_ROLES`, else admin (a route no one gave a role)."""
    role = ROUTE_ROLES.get((method, path))
    if role is None:
        log.warning("%s %s has no role in server/auth.py ROUTE_ROLES: admin only", method, path)
        return "admin"
    return role


def guard(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """The routes, each behind its :class:`RoleCheck` (public ones as they are).

    Copies: the modules' route lists are shared by every app built in a
    process, and a route wrapped in place would carry the check (and one more
    per app) into apps that have no token middleware."""
    guarded: list[BaseRoute] = []
    for route in routes:
        if isinstance(route, Route) and route.path not in PUBLIC:
            methods = sorted((route.methods or {"GET"}) - {"HEAD"})
            method = methods[0]
            role = max((route_role(m, route.path) for m in methods), key=ROLES.index)
            route = copy.copy(route)
            route.app = RoleCheck(route.app, role, f"{method} {route.path}")
        guarded.append(route)
    return guarded


def throttle_of(request: Request) -> Throttle:
    throttle: Throttle = request.app.state.throttle
    return throttle


def book_of(request: Request) -> TokenBook:
    book: TokenBook = request.app.state.tokens
    return book


@takes("whether the server needs a token, whether this request has one, and its role and name")
async def auth_state(request: Request) -> Response:
    """Whether the server needs a token, whether this request has one, and its role and name."""
    book = book_of(request)
    if not book.required:
        return JSONResponse({"token_required": False, "authenticated": True, **LOCAL.to_json()})
    ident: Identity | None = None
    if presented(request):  # a wrong cookie here is a guess like any other
        who = authenticate(request, book, throttle_of(request))
        if isinstance(who, Response) and who.status_code == 429:
            return who
        ident = who if isinstance(who, Identity) else None
    return JSONResponse(
        {"token_required": True, "authenticated": ident is not None, "role": ident and ident.role, "name": ident and ident.name}
    )


LOGIN = Body(Text("token", required=True, example="swt_example"))


@takes("sign in: the token becomes an HttpOnly, SameSite=Strict cookie", body=LOGIN)
async def login(request: Request) -> Response:
    book = book_of(request)
    given: str = LOGIN.read(await read_json(request))["token"]
    if not book.required:
        return JSONResponse({"ok": True, **LOCAL.to_json()})
    throttle = throttle_of(request)
    client = client_of(request)
    wait = throttle.retry_after(client)
    if wait > 0:
        return too_many(wait)
    ident = book.identify(given)
    if ident is None:
        throttle.failed(client)
        raise ApiError(401, "wrong token")
    response = JSONResponse({"ok": True, **ident.to_json()})
    response.set_cookie(
        COOKIE,
        given,
        httponly=True,
        samesite="strict",
        max_age=30 * 86400,
        secure=request.url.scheme == "https",  # behind TLS, from a --trusted-proxies proxy
    )
    return response


@takes("sign out: the cookie is cleared")
async def logout(request: Request) -> Response:
    response = JSONResponse({"ok": True})
    response.delete_cookie(COOKIE)
    return response


routes = [
    Route("/auth", auth_state, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
