"""Tokens: checking one, signing in and out, and slowing down guessers.

With ``--token``, a request presents it as ``Authorization: Bearer <token>``,
the sign-in cookie, or ``?token=`` (kept for scripts; the page uses the
cookie, which an EventSource sends too). An empty token is never a token.

Wrong tokens are throttled per client address (issue 8, item 13: 932 wrong
sign-ins a second were answered without a pause): each address has a bucket
of :data:`BURST` failures that refills at :data:`PER_MINUTE` a minute. While
it is empty, every credential from that address gets 429 with
``Retry-After``, right or wrong: checking a right one would tell a guesser
that it had found the token at full speed.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sessionwatch.errors import ApiError
from sessionwatch.server.api import _str, engine_of, read_json

#: The sign-in cookie: the token, HttpOnly, SameSite=Strict.
COOKIE = "sessionwatch_token"

#: Failures an address may make at once...
BURST = 10
#: ...and how many more it gets each minute after that.
PER_MINUTE = 10
#: Addresses remembered; the least recently seen is forgotten first.
MAX_CLIENTS = 10_000


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


def unauthorized() -> JSONResponse:
    return JSONResponse(
        {"error": "this server needs a token: Authorization: Bearer <token>"},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


def too_many(wait_s: float) -> JSONResponse:
    seconds = max(1, math.ceil(wait_s))
    return JSONResponse(
        {"error": f"too many wrong tokens from this address; try again in {seconds} s"},
        status_code=429,
        headers={"Retry-After": str(seconds)},
    )


def check(request: Request, token: str, throttle: Throttle) -> Response | None:
    """None if the request carries ``token``, else the answer to send (401 or 429)."""
    if not presented(request):
        return unauthorized()
    client = client_of(request)
    wait = throttle.retry_after(client)
    if wait > 0:
        return too_many(wait)
    if token_ok(request, token):
        return None
    throttle.failed(client)
    return unauthorized()


def throttle_of(request: Request) -> Throttle:
    throttle: Throttle = request.app.state.throttle
    return throttle


async def auth_state(request: Request) -> Response:
    token = engine_of(request).settings.token
    if token is None:
        return JSONResponse({"token_required": False, "authenticated": True})
    authenticated = False
    if presented(request):  # a wrong cookie here is a guess like any other
        answer = check(request, token, throttle_of(request))
        if answer is not None and answer.status_code == 429:
            return answer
        authenticated = answer is None
    return JSONResponse({"token_required": True, "authenticated": authenticated})


async def login(request: Request) -> Response:
    token = engine_of(request).settings.token
    data = await read_json(request)
    given = _str(data, "token", required=True)
    assert given is not None
    if token is None:
        return JSONResponse({"ok": True})
    throttle = throttle_of(request)
    client = client_of(request)
    wait = throttle.retry_after(client)
    if wait > 0:
        return too_many(wait)
    if not hmac.compare_digest(given.encode(), token.encode()):
        throttle.failed(client)
        raise ApiError(401, "wrong token")
    response = JSONResponse({"ok": True})
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        max_age=30 * 86400,
        secure=request.url.scheme == "https",  # behind TLS, from a --trusted-proxies proxy
    )
    return response


async def logout(request: Request) -> Response:
    response = JSONResponse({"ok": True})
    response.delete_cookie(COOKIE)
    return response


routes = [
    Route("/auth", auth_state, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
