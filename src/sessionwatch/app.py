"""The ASGI application: routes, auth, error shapes, and the lifespan that owns
every background task."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sessionwatch import api
from sessionwatch.config import Settings
from sessionwatch.monitor import ChangeSource, Monitor
from sessionwatch.stream import BadRequest, stream_response

log = logging.getLogger(__name__)

FRONTEND = Path(__file__).parent / "frontend"


def unauthorized() -> JSONResponse:
    return JSONResponse(
        {"error": "this server needs a token: Authorization: Bearer <token>"},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


class TokenMiddleware:
    """With ``--token``, every path but the public ones needs it."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        public = path in ("/", "/healthz", "/auth", "/login", "/logout", "/favicon.ico") or (
            path.startswith("/static/")
        )
        if public or api.token_ok(Request(scope), self.token):
            await self.app(scope, receive, send)
            return
        await unauthorized()(scope, receive, send)


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
    assert isinstance(exc, api.ApiError)
    request.app.state.monitor.metrics.http_errors.labels(str(exc.status)).inc()
    return JSONResponse({"error": exc.message}, status_code=exc.status)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: "not found", 405: "method not allowed"}
    return JSONResponse(
        {"error": messages.get(exc.status_code, str(exc.detail))},
        status_code=exc.status_code,
        headers=exc.headers,
    )


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

    def __init__(self, starlette: Starlette, monitor: Monitor) -> None:
        self.starlette = starlette
        self.monitor = monitor
        self.state = starlette.state
        self.token = monitor.settings.token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/stream":
            await self.starlette(scope, receive, send)
            return
        response: Response
        request = Request(scope)
        if request.method not in ("GET", "HEAD"):
            response = JSONResponse({"error": "method not allowed"}, status_code=405)
        elif self.token is not None and not api.token_ok(request, self.token):
            response = unauthorized()
        else:
            try:
                response = stream_response(
                    request, self.monitor.hub, self.monitor.settings.stream_backend
                )
            except BadRequest as exc:
                response = JSONResponse({"error": str(exc)}, status_code=400)
        del request
        await response(scope, receive, send)


def create_app(settings: Settings, *, changes: ChangeSource | None = None) -> App:
    """Build the app. ``changes`` replaces the filesystem watcher (tests)."""
    monitor = Monitor(settings, changes=changes)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await monitor.open()
        # Everything loaded so far lives as long as the server: keep it out of
        # the collector's generations, so its pauses stay short with
        # thousands of sessions and connections.
        gc.collect()
        gc.freeze()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(monitor.run)
                try:
                    yield
                finally:
                    monitor.stop_event.set()
                    tg.cancel_scope.cancel()
        finally:
            await monitor.close()

    routes: list[BaseRoute] = [
        Route("/", index, methods=["GET"]),
        *api.routes,
    ]
    if FRONTEND.is_dir():
        static = NoCache(StaticFiles(directory=FRONTEND))
        routes.append(Mount("/static", static, name="static"))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            api.ApiError: api_error,
            HTTPException: http_error,
            Exception: server_error,
        },
    )
    app.state.monitor = monitor
    app.add_middleware(TokenMiddleware, token=settings.token)
    return App(app, monitor)
