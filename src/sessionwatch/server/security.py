"""What stands between the network and the app: the Host check (DNS rebinding),
the CSRF check, and the limits on what one client can hold (slowloris).

Every answer here is the API's error shape, ``{"error": "<one sentence>"}``.
Issue 8 items 2, 3 and 12 are the attacks these stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sessionwatch.config import normalize_host

log = logging.getLogger(__name__)

#: Methods that change state; the CSRF rules apply to them.
UNSAFE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})
#: ``Sec-Fetch-Site`` values that mean "another origin sent this". A page on
#: another port of 127.0.0.1 is ``same-site`` (a site ignores ports) but
#: another origin, so ``same-site`` is refused too.
FOREIGN_SITES = frozenset({b"cross-site", b"same-site"})
#: A request head must arrive within this long of the connection opening (or
#: of the previous response on a kept-alive connection).
HEAD_TIMEOUT_S = 10.0
#: A request head larger than this closes the connection (the parser has no
#: limit of its own, so a client could otherwise grow one for HEAD_TIMEOUT_S).
MAX_HEAD_BYTES = 64 * 1024
#: uvicorn closes an idle kept-alive connection after this long.
KEEP_ALIVE_S = 5
#: File descriptors kept back for everything but client connections: the
#: database, the watcher, the parallel scan's pipes, logs.
RESERVED_FDS = 128
#: The stream's contract (DESIGN.md, Speed and size).
STREAM_CLIENTS = 10_000


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _split_host_port(value: str) -> tuple[str, int | None]:
    """``"[::1]:8765"`` → ``("::1", 8765)``; a missing or bad port is None."""
    host = normalize_host(value)
    value = value.strip()
    port_text = ""
    if value.startswith("["):
        end = value.find("]")
        if end != -1 and value[end + 1 : end + 2] == ":":
            port_text = value[end + 2 :]
    elif value.count(":") == 1:
        port_text = value.split(":", 1)[1]
    return host, int(port_text) if port_text.isdigit() else None


def host_allowed(host_header: str | None, allowed: frozenset[str]) -> bool:
    """Whether a request's ``Host`` is one this server answers to (ports ignored)."""
    if "*" in allowed:
        return True
    return host_header is not None and normalize_host(host_header) in allowed


def origin_matches(origin: str, host_header: str | None, allowed: frozenset[str]) -> bool:
    """Whether ``Origin`` names this server: the request's own host and port, or
    another of its allowed names on the same port (``localhost`` for ``127.0.0.1``).

    ``null`` (sandboxed frames, files) and anything unparsable never match.
    """
    if host_header is None:
        return False
    try:
        parts = urlsplit(origin.strip())
        origin_port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    origin_host = normalize_host(parts.hostname)
    host, port = _split_host_port(host_header)
    if port is None:
        # No port in Host: the client used its scheme's default port (or a
        # proxy dropped it), so the origin must have used a default one too.
        if origin_port is not None and origin_port not in (80, 443):
            return False
    elif (origin_port or (443 if parts.scheme == "https" else 80)) != port:
        return False
    return origin_host == host or ("*" not in allowed and origin_host in allowed)


class RequestGuard:
    """The Host check and the CSRF check, ahead of everything (``/stream`` too).

    - ``Host`` must be an allowed host, else 400: a DNS-rebinding page sends
      its own name. ``GET /healthz`` is exempt: it says nothing but "ok", and
      probes (Kubernetes, load balancers) call it by address.
    - A POST, PUT, DELETE or PATCH whose ``Origin`` names another origin, or
      whose ``Sec-Fetch-Site`` is ``cross-site`` or ``same-site``, is refused
      with 403, body or not. One with a body must be ``application/json``,
      else 415: a form or a no-cors ``fetch`` can only send text/plain, form
      or multipart bodies, so JSON-only shuts them out.
    """

    def __init__(self, allowed_hosts: frozenset[str]) -> None:
        self.allowed_hosts = allowed_hosts

    def refusal(self, scope: Scope) -> JSONResponse | None:
        """The answer to a refused HTTP request, None for one that may pass."""
        problem = self.check(scope)
        return None if problem is None else _error(*problem)

    def check(self, scope: Scope) -> tuple[int, str] | None:
        """``(status, message)`` for a refused request, None for one that may pass."""
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)
        raw_host = headers.get(b"host")
        host = raw_host.decode("latin-1") if raw_host is not None else None
        method: str = scope["method"]
        exempt = scope["path"] == "/healthz" and method in ("GET", "HEAD")
        if not exempt and not host_allowed(host, self.allowed_hosts):
            return 400, (
                f"this server does not answer to the host {host or '(none)'!r}; "
                "add it with --allowed-hosts"
            )
        if method not in UNSAFE_METHODS:
            return None
        if headers.get(b"sec-fetch-site", b"").strip().lower() in FOREIGN_SITES:
            return 403, "cross-origin requests may not change anything here"
        origin = headers.get(b"origin")
        if origin is not None and not origin_matches(
            origin.decode("latin-1"), host, self.allowed_hosts
        ):
            return 403, "cross-origin requests may not change anything here"
        length = headers.get(b"content-length", b"").strip()
        has_body = b"transfer-encoding" in headers or (length not in (b"", b"0"))
        if has_body:
            media_type = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
            if media_type != b"application/json":
                return 415, "the request body must be JSON, sent as Content-Type: application/json"
        return None


# --- slowloris --------------------------------------------------------------------


def raise_fd_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; the new soft limit.

    Every connection is a file descriptor; 10,000 stream clients do not fit
    the usual soft limit of 1,024.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= want:
        return soft if soft != resource.RLIM_INFINITY else want
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        return soft
    return want


def max_connections(fd_limit: int) -> int:
    """Client connections that fit ``fd_limit`` with room left for the rest."""
    return max(16, fd_limit - RESERVED_FDS)


class _Connections:
    """Shared by every connection of one server.

    Per-connection state lives here, not on the protocol objects: an
    attribute added to uvicorn's protocol instances unshares their
    ``__dict__`` keys and costs every open stream about 1 KiB (measured).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.live = 0
        #: connections with no request being answered, oldest first, and the
        #: timer that closes each if its request head does not arrive
        self.waiting: dict[GuardedProtocol, asyncio.TimerHandle] = {}
        #: bytes received by waiting connections without a complete head
        self.head_bytes: dict[GuardedProtocol, int] = {}
        #: closed by us, not yet reported lost by the transport
        self.dropped: set[GuardedProtocol] = set()


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on what one client can hold.

    uvicorn has no timeout for reading a request head (its keep-alive timer
    stops at the first byte), so a client sending a byte every few seconds
    holds a connection, and a file descriptor, for ever; 1,100 of them
    exhausted the server's (issue 8, item 12). Here:

    - the head must arrive within :data:`HEAD_TIMEOUT_S` and be at most
      :data:`MAX_HEAD_BYTES`;
    - past the connection limit (the file limit minus a reserve), the
      connection that has waited longest for a request is closed to make room.
      One being answered (an open stream) is never closed for this, so the
      stream's 10,000 clients keep their connections whatever else arrives.

    Build one class per server with :func:`guarded_protocol`.
    """

    connections_state: _Connections
    head_timeout_s: float = HEAD_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        state = self.connections_state
        state.live += 1
        self._wait()
        if state.live > state.limit:
            next(iter(state.waiting))._drop()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        state = self.connections_state
        if self._answering():
            self._unwait()
        elif self in state.waiting:
            size = state.head_bytes.get(self, 0) + len(data)
            state.head_bytes[self] = size
            if size > MAX_HEAD_BYTES:
                self._drop()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self._answering():
            self._wait()

    def connection_lost(self, exc: Exception | None) -> None:
        state = self.connections_state
        self._unwait()
        if self in state.dropped:
            state.dropped.discard(self)
        else:
            state.live -= 1
        super().connection_lost(exc)

    def _answering(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _wait(self) -> None:
        self._unwait()
        self.connections_state.waiting[self] = self.loop.call_later(self.head_timeout_s, self._drop)

    def _unwait(self) -> None:
        state = self.connections_state
        timer = state.waiting.pop(self, None)
        if timer is not None:
            timer.cancel()
            state.head_bytes.pop(self, None)

    def _drop(self) -> None:
        state = self.connections_state
        self._unwait()
        if self not in state.dropped and not self.transport.is_closing():
            state.dropped.add(self)
            state.live -= 1
            self.transport.close()


def guarded_protocol(limit: int, head_timeout_s: float = HEAD_TIMEOUT_S) -> type[GuardedProtocol]:
    """A :class:`GuardedProtocol` class for one server, holding at most ``limit`` connections."""
    return type(
        "GuardedProtocol",
        (GuardedProtocol,),
        {"connections_state": _Connections(limit), "head_timeout_s": head_timeout_s},
    )


class OncePerInterval(logging.Filter):
    """Let one record starting with ``prefix`` through per ``interval_s``, with a count.

    asyncio logs "socket.accept() out of system resource" with a traceback for
    every failed accept, up to the listen backlog per loop turn: 283 MB in
    80 s when file descriptors ran out. One line a minute says as much.
    """

    def __init__(
        self, prefix: str, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.prefix = prefix
        self.interval_s = interval_s
        self.clock = clock
        self.last: float | None = None
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(self.prefix):
            return True
        now = self.clock()
        previous = self.last
        if previous is not None and now - previous < self.interval_s:
            self.suppressed += 1
            return False
        self.last = now
        line = message.splitlines()[0]
        exc: Any = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            line += f": {exc}"
        if self.suppressed and previous is not None:
            line += f" ({self.suppressed} more in the {now - previous:.0f} s before)"
        record.msg, record.args = line, ()
        record.exc_info, record.exc_text = None, None  # the traceback says nothing new
        self.suppressed = 0
        return True
