"""One HTTP client for the sessionwatch API: URL, token, errors, retries.

Every answer goes through :func:`check`, so a status means the same thing to
every client:

- 401/403 -> :class:`AuthError` ("the server rejected the token"). Never
  retried blindly: retrying the same token cannot help until someone changes
  the server or the token, so callers report it once and retry slowly, if at
  all.
- a connection error, a timeout or a 5xx -> :class:`ServerUnreachable`;
  worth retrying with :class:`Backoff`.
- any other 4xx -> :class:`ApiError` carrying the API's own sentence
  (``{"error": "<one sentence>"}``).

Bodies are sent as JSON (``Content-Type: application/json``; the server
answers 415 to anything else).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import httpx

from sessionwatch import errors
from sessionwatch.errors import SessionwatchError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "ApiError",
    "AsyncApi",
    "AuthError",
    "Backoff",
    "ClientError",
    "ServerUnreachable",
    "SyncApi",
    "auth_headers",
    "check",
]

DEFAULT_TIMEOUT_S = 10.0
#: The web page's reconnect delays (frontend/connection.js, backoffMs).
BACKOFF_S: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)


class ClientError(SessionwatchError):
    """A request to the sessionwatch server did not do what was asked."""


class AuthError(ClientError):
    """401/403: the server rejected the token (or none was given), or, 403,
    the token's role may not do this (``sentence`` says which role it needs)."""

    def __init__(self, url: str, status: int, sentence: str | None = None) -> None:
        self.url = url
        self.status = status
        self.sentence = sentence
        if sentence:
            super().__init__(f"the server at {url} refused: {sentence} ({status})")
        else:
            super().__init__(f"the server at {url} rejected the token ({status})")


class ServerUnreachable(ClientError):
    """No answer, or a 5xx: the server is away for now; retry later."""

    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        self.url = url
        self.status = status
        self.reason = reason
        super().__init__(f"the server at {url} is unreachable ({reason})")


class ApiError(ClientError, errors.ApiError):
    """Any other 4xx: the server's :class:`sessionwatch.errors.ApiError`,
    with its status and its own `error` sentence."""


def auth_headers(token: str | None) -> dict[str, str]:
    """``Authorization: Bearer <token>`` when there is a token."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def error_sentence(response: httpx.Response) -> str:
    """The API's ``{"error": ...}`` sentence, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    text = response.text.strip()[:200]
    return text or f"the server answered {response.status_code}"


def check(base_url: str, response: httpx.Response) -> httpx.Response:
    """Return `response` if it is a success (< 400); else raise the error it means."""
    status = response.status_code
    if status < 400:
        return response
    if status == 401:
        raise AuthError(base_url, status)
    if status == 403:
        raise AuthError(base_url, status, error_sentence(response))
    if status >= 500:
        raise ServerUnreachable(base_url, f"it answered {status}", status)
    raise ApiError(status, error_sentence(response))


def unreachable(base_url: str, error: httpx.HTTPError) -> ServerUnreachable:
    reason = str(error) or type(error).__name__
    return ServerUnreachable(base_url, reason)


class Backoff:
    """Delays between retries: `delays` in turn, then the last one for ever.

    >>> b = Backoff((1, 2)); [b.next() for _ in range(3)]
    [1, 2, 2]
    """

    def __init__(self, delays: Sequence[float] = BACKOFF_S) -> None:
        if not delays:
            raise ValueError("Backoff needs at least one delay")
        self.delays = tuple(delays)
        self.attempt = 0  # retries since the last success

    @property
    def exhausted(self) -> bool:
        """Every delay has been used once (the dashboards fall back to polling)."""
        return self.attempt >= len(self.delays)

    def next(self) -> float:
        delay = self.delays[min(self.attempt, len(self.delays) - 1)]
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


class _Base:
    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token

    @property
    def headers(self) -> dict[str, str]:
        return auth_headers(self.token)


class AsyncApi(_Base):
    """An ``httpx.AsyncClient`` for one server; use as ``async with``."""

    def __init__(
        self, base_url: str, token: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        super().__init__(base_url, token)
        self.http = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=httpx.Timeout(timeout_s)
        )

    async def __aenter__(self) -> AsyncApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        retries: Sequence[float] = (),
    ) -> httpx.Response:
        """One request; raise the error the answer means.

        `retries` are delays: after each :class:`ServerUnreachable` wait the
        next one and try again. Other errors are never retried.
        """
        waits = list(retries)
        while True:
            try:
                try:
                    response = await self.http.request(method, path, json=json, params=params)
                except httpx.HTTPError as error:
                    raise unreachable(self.base_url, error) from error
                return check(self.base_url, response)
            except ServerUnreachable:
                if not waits:
                    raise
                await asyncio.sleep(waits.pop(0))

    async def get_json(self, path: str, **kwargs: Any) -> Any:
        response = await self.request("GET", path, **kwargs)
        try:
            return response.json()
        except ValueError as error:
            raise ServerUnreachable(self.base_url, "its answer is not JSON") from error


class SyncApi(_Base):
    """A blocking client, for threads and interpreter exit; use as ``with``."""

    def __init__(
        self, base_url: str, token: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        super().__init__(base_url, token)
        self.http = httpx.Client(
            base_url=self.base_url, headers=self.headers, timeout=httpx.Timeout(timeout_s)
        )

    def __enter__(self) -> SyncApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        retries: Sequence[float] = (),
        timeout_s: float | None = None,
    ) -> httpx.Response:
        """As :meth:`AsyncApi.request`, blocking."""
        waits = list(retries)
        extra: dict[str, Any] = {} if timeout_s is None else {"timeout": timeout_s}
        while True:
            try:
                try:
                    response = self.http.request(method, path, json=json, params=params, **extra)
                except httpx.HTTPError as error:
                    raise unreachable(self.base_url, error) from error
                return check(self.base_url, response)
            except ServerUnreachable:
                if not waits:
                    raise
                time.sleep(waits.pop(0))
