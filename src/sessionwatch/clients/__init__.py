"""What every client of a sessionwatch server shares (the Panel tracker, the
Panel dashboard; later `run`, `mcp` and `agent`).

- :mod:`.http`: base URL, bearer token, one error vocabulary
  (:class:`AuthError`, :class:`ServerUnreachable`, :class:`ApiError`),
  JSON bodies, the reconnect backoff.
- :mod:`.follow`: the ``/stream`` follower (Last-Event-ID, keepalive
  watchdog, backoff).

Nothing here imports the server (its store, aiosqlite, starlette).
"""

from __future__ import annotations

from sessionwatch.clients.http import (
    ApiError,
    AsyncApi,
    AuthError,
    Backoff,
    ClientError,
    ServerUnreachable,
    SyncApi,
    auth_headers,
)

__all__ = [
    "ApiError",
    "AsyncApi",
    "AuthError",
    "Backoff",
    "ClientError",
    "ServerUnreachable",
    "SyncApi",
    "auth_headers",
]
