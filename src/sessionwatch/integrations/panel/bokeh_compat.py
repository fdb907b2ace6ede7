"""Every access of the tracker and the dashboard to Panel's and bokeh's insides.

Panel has no public API for what the tracker needs (find the session a
tracker is created in, run a coroutine on that session's loop from the
worker thread, close its websocket with a close code, destroy it at once),
so some of it reads private (``_``) or version-dependent attributes. All of
those are here, each in one function, each named in :data:`ACCESSES`:

- the first access checks the installed panel and bokeh against
  :data:`TESTED` and logs one warning naming both versions when they are
  outside it;
- an access that fails the way an upgrade breaks it (the attribute is gone,
  the call's signature changed) logs one warning naming the access and the
  versions, and the function returns its "could not" answer: the app keeps
  running, only tracking or the kill degrades;
- ``tests/test_bokeh_compat.py::test_every_private_access_works_in_a_real_panel_server``
  exercises every entry of :data:`ACCESSES` against the installed Panel in a
  real Panel server, so an upgrade that breaks one fails that test, by name.

Importing this module imports neither panel nor bokeh.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import re
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACCESSES",
    "TESTED",
    "PanelSession",
    "call_soon",
    "check_versions",
    "close_session",
    "current_document",
    "current_session",
    "execute_in_document",
    "on_session_destroyed",
    "session_context",
]

log = logging.getLogger("sessionwatch.panel")

#: The (major, minor) ranges, both ends included, that the canary test has
#: passed against. Widen them after it passes against another version.
TESTED: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "panel": ((1, 9), (1, 9)),
    "bokeh": ((3, 9), (3, 9)),
}

#: Every access this module makes, by the name warnings and the canary use.
ACCESSES = (
    "pn.state.curdoc",
    "Document.session_context",
    "BokehSessionContext.id",
    "BokehSessionContext.request",
    "pn.state.user",
    "pn.state.app_url",
    "pn.state.on_session_destroyed",
    "ApplicationContext.io_loop.add_callback",
    "panel.io.state.set_curdoc",
    "pn.state.execute(schedule=True)",
    "BokehSessionContext.session",
    "ServerSession._subscribed_connections",
    "ServerConnection._socket.close(code, reason)",
    "ServerSession.request_expiration",
    "ApplicationContext._cleanup_sessions",
)

#: What an upgrade that breaks an access raises.
_BREAKAGE = (AttributeError, TypeError, ImportError)

#: Accesses that ran, and those that failed (name -> error); the canary reads both.
EXERCISED: set[str] = set()
BROKEN: dict[str, str] = {}
_lock = threading.Lock()
_versions_checked = False


# --------------------------------------------------------------------------
# Versions
# --------------------------------------------------------------------------


def installed_versions() -> dict[str, str]:
    """The installed panel and bokeh versions ("missing" when not installed)."""
    versions: dict[str, str] = {}
    for name in TESTED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def _major_minor(version: str) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2])) if match else None


def _describe(versions: dict[str, str]) -> str:
    return ", ".join(f"{name} {version}" for name, version in versions.items())


def _tested() -> str:
    return ", ".join(
        f"{name} {low[0]}.{low[1]}" + ("" if low == high else f" to {high[0]}.{high[1]}")
        for name, (low, high) in TESTED.items()
    )


def untested(versions: dict[str, str]) -> str | None:
    """The warning for `versions` when one is outside :data:`TESTED`, else None."""
    outside = False
    for name, (low, high) in TESTED.items():
        found = _major_minor(versions.get(name, ""))
        if found is None or not low <= found <= high:
            outside = True
    if not outside:
        return None
    return (
        f"sessionwatch's Panel integration was tested with {_tested()}; installed: "
        f"{_describe(versions)}. Tracking and killing sessions may not work; "
        "tests/test_bokeh_compat.py checks them against this Panel."
    )


def check_versions() -> str | None:
    """Check the installed versions once per process; warn once if untested."""
    global _versions_checked
    with _lock:
        if _versions_checked:
            return None
        _versions_checked = True
    message = untested(installed_versions())
    if message is not None:
        log.warning("%s", message)
    return message


@contextlib.contextmanager
def _access(name: str) -> Iterator[None]:
    """Run one access: version check, record it, and turn a breakage into one warning.

    A breakage is re-raised as :class:`Broken` for the caller's fallback.
    """
    if not _versions_checked:
        check_versions()
    EXERCISED.add(name)
    try:
        yield
    except _BREAKAGE as error:
        _broken(name, error)
        raise Broken(name) from error


class Broken(Exception):
    """An access failed the way a Panel or bokeh upgrade breaks it."""


def _broken(name: str, error: BaseException) -> None:
    with _lock:
        first = name not in BROKEN
        BROKEN[name] = repr(error)
    if first:
        log.warning(
            "sessionwatch: the Panel/bokeh access %s failed (%r) with %s (tested with %s); "
            "the app keeps running, tracking or kills from the dashboard may not work",
            name,
            error,
            _describe(installed_versions()),
            _tested(),
        )


# --------------------------------------------------------------------------
# The session being built
# --------------------------------------------------------------------------


@dataclass
class PanelSession:
    """What the tracker needs from the Panel session it was created in."""

    session_id: str
    document: Any  # bokeh.document.Document
    user: str | None
    url: str | None


def current_document() -> Any:
    """The bokeh Document of the Panel session being built or run (or None)."""
    try:
        import panel as pn
    except ImportError:
        return None
    try:
        with _access("pn.state.curdoc"):
            return pn.state.curdoc
    except Broken:
        return None


def session_context(document: Any) -> Any:
    """The document's bokeh session context; None when it is not served."""
    if document is None:
        return None
    try:
        with _access("Document.session_context"):
            return document.session_context
    except Broken:
        return None


def current_session() -> PanelSession | None:
    """The Panel server session being built or run, or None outside one."""
    doc = current_document()
    context = session_context(doc)
    if context is None:
        return None
    try:
        with _access("BokehSessionContext.id"):
            sid = context.id
    except Broken:
        return None
    if not sid:
        return None
    import panel as pn

    # The user and the URL are extras: whatever goes wrong, the session is
    # tracked without them.
    user: str | None = None
    with contextlib.suppress(Exception), _access("pn.state.user"):
        user = pn.state.user or None
    url: str | None = None
    app_path = ""
    with contextlib.suppress(Exception), _access("pn.state.app_url"):
        app_path = pn.state.app_url or ""
    with contextlib.suppress(Exception), _access("BokehSessionContext.request"):
        request = context.request
        if request is not None:
            url = f"{request.protocol}://{request.host}{app_path}"
    return PanelSession(str(sid), doc, user, url)


def on_session_destroyed(callback: Callable[[Any], None]) -> bool:
    """Call `callback(session_context)` when the current Panel session ends."""
    import panel as pn

    try:
        with _access("pn.state.on_session_destroyed"):
            pn.state.on_session_destroyed(callback)
    except Broken:
        return False
    return True


# --------------------------------------------------------------------------
# Running code on a session's loop
# --------------------------------------------------------------------------


def call_soon(document: Any, coroutine: Callable[[], Coroutine[Any, Any, None]]) -> bool:
    """Run `coroutine` on the Panel session's IOLoop, from any thread.

    Straight onto the IOLoop (`IOLoop.add_callback` is thread-safe; the loop
    is `ApplicationContext.io_loop`), not through the document: Panel holds
    the document while an async callback of the app runs, and a document
    callback would wait for it. Returns False once the session is gone.
    """
    context = session_context(document)
    if context is None:
        return False
    try:
        with _access("ApplicationContext.io_loop.add_callback"):
            loop = context.server_context.application_context.io_loop
    except Broken:
        return False
    try:
        loop.add_callback(coroutine)
    except Exception:  # noqa: BLE001 - the loop is closed: the session is gone
        return False
    return True


def execute_in_document(document: Any, callback: Callable[[], None]) -> bool:
    """Run `callback` on the document's next tick with the document as `curdoc`.

    Through Panel, not bokeh's ``add_next_tick_callback`` alone: Panel runs
    the callback with this document as ``curdoc``, so model changes are sent
    at once and in order. Without it Panel defers them to later ticks, and a
    deferred older update could land after a newer one made in a widget
    callback. Returns False when it could not be scheduled.
    """
    import panel as pn

    try:
        with _access("panel.io.state.set_curdoc"):
            from panel.io.state import set_curdoc
        with set_curdoc(document), _access("pn.state.execute(schedule=True)"):
            pn.state.execute(callback, schedule=True)
    except Broken:
        return False
    except Exception:  # noqa: BLE001 - the session is gone
        log.debug("could not schedule on a Panel document", exc_info=True)
        return False
    return True


# --------------------------------------------------------------------------
# Closing a session
# --------------------------------------------------------------------------


async def close_session(context: Any, code: int, reason: str) -> bool:
    """Close every browser connection of a Panel session with `code` and
    `reason`, and destroy the session. Runs on the Panel server's IOLoop.

    1. `session_context.session` is the bokeh `ServerSession`;
    2. its `_subscribed_connections` and each connection's `_socket` (the
       tornado `WebSocketHandler`) are private; Panel's own
       `panel.io.document` reads the same two attributes;
    3. `WebSocketHandler.close(code, reason)` is public tornado: with 1001
       the browser shows `pn.config.disconnect_notification`;
    4. once the connections are gone, `ServerSession.request_expiration()`
       marks the session, and `ApplicationContext._cleanup_sessions`
       (private, what bokeh's own periodic cleanup job calls) destroys it at
       once instead of 17 s later: periodic callbacks stop and the
       `on_session_destroyed` hooks run.

    Returns whether the session was destroyed.
    """
    if context is None:
        return False
    try:
        with _access("BokehSessionContext.session"):
            deadline = time.monotonic() + 6.0
            while context.session is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # still being created (a killed id that came back)
            session = context.session
        if session is None or session.destroyed:
            return session is not None
        with _access("ServerSession._subscribed_connections"):
            connections = list(session._subscribed_connections)
        for connection in connections:
            with _access("ServerConnection._socket.close(code, reason)"):
                socket = connection._socket
            with contextlib.suppress(Exception):  # already closing
                socket.close(code, reason)
        # tornado calls on_close (which unsubscribes) when the client answers
        # the close frame, or aborts an unresponsive client after 5 s.
        deadline = time.monotonic() + 6.0
        while session.connection_count > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        with _access("ServerSession.request_expiration"):
            session.request_expiration()
        with _access("ApplicationContext._cleanup_sessions"):
            application_context = context.server_context.application_context
            if application_context is None:
                return False
            # The linger argument only matters for sessions nobody asked to expire.
            await application_context._cleanup_sessions(2**62)
    except Broken:
        return False
    return bool(session.destroyed)
