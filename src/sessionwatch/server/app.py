"""The ASGI application: routes, auth, error shapes, and the lifespan that owns
every background task.

Outermost first: :class:`~sessionwatch.server.security.RequestGuard` (Host and
CSRF checks), then :class:`App` (``/stream`` here, the rest to Starlette),
then :class:`~sessionwatch.server.auth.TokenMiddleware` (who the token is) and
the routes, each behind its role (``server/auth.py`` ``ROUTE_ROLES``).
"""

from __future__ import annotations

import gc
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route, Router
from starlette.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sessionwatch.agents import api as agents_api
from sessionwatch.agents.registry import AgentRegistry
from sessionwatch.control import Control
from sessionwatch.control import api as control_api
from sessionwatch.managed import api as managed_api
from sessionwatch.managed.manager import Manager
from sessionwatch.relay import Relay
from sessionwatch.server import api, auth, openapi
from sessionwatch.config import Settings
from sessionwatch.errors import ApiError, SessionwatchError
from sessionwatch.engine import ChangeSource, Engine
from sessionwatch.server.security import RequestGuard
from sessionwatch.server.stream import stream_response
from sessionwatch.webhooks import Webhooks, dashboard_url

log = logging.getLogger(__name__)

FRONTEND = Path(__file__).parent.parent / "frontend"


class NoCache:
    """Static files revalidated on every load: file names carry no version,
    so after an upgrade a browser must not keep running old scripts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_no_cache(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Cache-Control"] = "no-cache"
            await send(message)

        await self.app(scope, receive, send_no_cache)


async def index(request: Request) -> Response:
    page = FRONTEND / "index.html"
    if not page.is_file():
        return JSONResponse({"error": "the web dashboard is not installed"}, status_code=404)
    return FileResponse(page, headers={"Cache-Control": "no-cache"})


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    request.app.state.engine.metrics.http_errors.labels(str(exc.status)).inc()
    return JSONResponse({"error": exc.sentence}, status_code=exc.status)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: "not found", 405: "method not allowed"}
    return JSONResponse(
        {"error": messages.get(exc.status_code, str(exc.detail))},
        status_code=exc.status_code,
        headers=exc.headers,
    )


def slash_redirects(router: Router) -> None:
    """Answer ``/all/`` (and ``/static``) with a redirect relative to the request.

    Starlette's own redirect writes ``http://<Host>/all``, an absolute URL
    built from whatever Host the client sent (issue 8, item 18). Here the
    Location is relative to the path asked for (``../all``, ``static/``), so
    it also holds behind a proxy that serves the app under a prefix.
    """
    router.redirect_slashes = False
    not_found = router.default

    async def default(scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if scope["type"] == "http" and path != "/":
            other = dict(scope)
            other["path"] = path.rstrip("/") if path.endswith("/") else path + "/"
            if any(route.matches(other)[0] is not Match.NONE for route in router.routes):
                raw: bytes = scope.get("raw_path") or path.encode()
                name = raw.rstrip(b"/").rsplit(b"/", 1)[-1].decode("latin-1")
                location = f"../{name}" if path.endswith("/") else f"{name}/"
                if scope.get("query_string"):
                    location += "?" + scope["query_string"].decode("latin-1")
                await RedirectResponse(location, status_code=307)(scope, receive, send)
                return
        await not_found(scope, receive, send)

    router.default = default


async def server_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"error": "internal error; see the server log"}, status_code=500)


class App:
    """The ASGI entry point: ``/stream`` is served here, ahead of Starlette.

    A stream connection lives for hours and there may be 10,000 of them; going
    around Starlette's middleware and routing keeps its suspended frames (and
    so its memory) to the few that do the work. Everything else goes to the
    Starlette app.
    """

    def __init__(self, starlette: Starlette, engine: Engine) -> None:
        self.starlette = starlette
        self.engine = engine
        self.state = starlette.state
        self.tokens: auth.TokenBook = starlette.state.tokens
        self.throttle: auth.Throttle = starlette.state.throttle
        #: one line saying why the lifespan could not start, once it failed
        self.startup_error: str | None = None
        self.guard = RequestGuard(engine.settings.allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.starlette(scope, receive, self._lifespan_send(send))
            return
        # Ahead of everything, /stream included: the Host and CSRF checks
        # (in this frame, not a middleware's: a stream holds its frames for hours).
        refusal = self.guard.refusal(scope) if scope["type"] == "http" else None
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if scope["type"] != "http" or scope["path"] != "/stream":
            await self.starlette(scope, receive, send)
            return
        response: Response
        request = Request(scope)
        if request.method not in ("GET", "HEAD"):
            response = JSONResponse({"error": "method not allowed"}, status_code=405)
        elif self.tokens.required and isinstance(who := auth.authenticate(request, self.tokens, self.throttle), Response):
            response = who  # any token may read the stream (viewer)
        else:
            try:
                response = stream_response(
                    request, self.engine.hub, self.engine.settings.stream_backend
                )
            except ApiError as exc:
                response = JSONResponse({"error": exc.sentence}, status_code=exc.status)
        del request
        await response(scope, receive, send)

    def _lifespan_send(self, send: Send) -> Send:
        """Starlette reports a failed start with the traceback; the lifespan
        has already logged what went wrong, so uvicorn gets no message."""

        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed" and self.startup_error is not None:
                message = {"type": "lifespan.startup.failed", "message": ""}
            await send(message)

        return lifespan_send


def create_app(settings: Settings, *, changes: ChangeSource | None = None) -> App:
    """Build the app. ``changes`` replaces the filesystem watcher (tests)."""
    engine = Engine(settings, changes=changes)
    control = Control(engine)
    engine.add_source(control)
    engine.answerer = control  # what POST /hooks answers with (sources/hooks/answer.py)
    managed = Manager(engine, budgets=control.budgets)
    engine.add_source(managed)
    control.managed = managed  # POST /sessions/{id}/approve answers a managed process's requests too
    engine.on_shutdown.append(managed.end_follows)
    tokens = auth.TokenBook(settings.token)
    agents = AgentRegistry(engine, control)  # sessions other machines' agents push (sessionwatch/agents)
    engine.add_source(agents)
    control.agents = agents  # an approval or a budget for an agent's session goes down to it
    engine.on_shutdown.append(agents.wake_all)
    relay = Relay(engine)  # replicas: actions for what another replica holds are carried out there
    control.relay = relay
    relay.handle("approve", control.relayed_approve)
    managed.relay_to(relay)
    entry: App | None = None
    webhooks: Webhooks | None = None
    if settings.webhooks:
        webhooks = Webhooks(settings.webhooks, dashboard=dashboard_url(settings.host, settings.port), metrics=engine.metrics)
        engine.hub.listeners.append(webhooks.observe)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await engine.open()
        except Exception as exc:
            # Close the store first: its worker thread would keep the process
            # alive, neither serving nor exiting, and systemd's
            # Restart=on-failure would never fire (issue 8, item 1).
            with anyio.CancelScope(shield=True):
                try:
                    await engine.close()
                except Exception:  # noqa: BLE001 - the first error is the one to report
                    log.debug("closing after a failed start failed too", exc_info=True)
            if isinstance(exc, sqlite3.Error):
                reason = f"database {settings.db} is damaged or unreadable: {exc}"
            elif isinstance(exc, (SessionwatchError, OSError)):
                reason = str(exc) or type(exc).__name__
            else:
                log.error("unexpected error while starting", exc_info=exc)
                reason = f"unexpected {type(exc).__name__}: {exc} (traceback above)"
            if entry is not None:
                entry.startup_error = f"cannot start: {reason}"
            raise
        # Everything loaded so far lives as long as the server: keep it out of
        # the collector's generations, so its pauses stay short with
        # thousands of sessions and connections.
        gc.collect()
        gc.freeze()
        try:
            await tokens.load(engine.store)  # before the first request: named tokens turn auth on
            await control.load()
            managed.budgets = control.budgets
            await managed.load()
            await agents.load()
            async with anyio.create_task_group() as tg:
                tg.start_soon(engine.run)
                tg.start_soon(control.run)
                tg.start_soon(managed.run)
                tg.start_soon(tokens.run, engine.store)
                tg.start_soon(agents.run)
                tg.start_soon(relay.run)
                if webhooks is not None:
                    tg.start_soon(webhooks.run)
                try:
                    yield
                finally:
                    engine.stop_event.set()
                    with anyio.CancelScope(shield=True):
                        await managed.close()  # no Claude Code process outlives the server
                        try:
                            await tokens.touch(engine.store, everything=True)
                        except Exception:  # noqa: BLE001 - a last use lost is no reason to fail the shutdown
                            log.warning("could not record the tokens' last use", exc_info=True)
                    tg.cancel_scope.cancel()
        finally:
            await engine.close()

    routes: list[BaseRoute] = [
        Route("/", index, methods=["GET"]),
        *api.routes,
        *control_api.routes,
        *managed_api.routes,
        *agents_api.routes,
        *auth.routes,
        *openapi.routes,
    ]
    routes = auth.guard(routes)  # each route behind its role (auth.ROUTE_ROLES)
    if FRONTEND.is_dir():
        static = NoCache(StaticFiles(directory=FRONTEND))
        routes.append(Mount("/static", static, name="static"))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            ApiError: api_error,
            HTTPException: http_error,
            Exception: server_error,
        },
    )
    slash_redirects(app.router)
    app.state.engine = engine
    app.state.control = control
    app.state.managed = managed
    app.state.agents = agents
    app.state.throttle = throttle = auth.Throttle()
    app.state.tokens = tokens
    app.add_middleware(auth.TokenMiddleware, book=tokens, throttle=throttle)
    entry = App(app, engine)
    return entry

