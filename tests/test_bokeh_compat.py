"""Panel's and bokeh's insides, as the tracker and the dashboard reach them
(sessionwatch.integrations.panel.bokeh_compat).

The canary runs every access against the installed Panel in a real Panel
server: a Panel or bokeh upgrade that breaks one fails it, naming the access.
The other tests check what a user sees when versions are untested or an
access breaks: one warning naming the versions, no crash.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from sessionwatch.integrations.panel import bokeh_compat
from sessionwatch.integrations.panel.tracker import KILL_CLOSE_CODE, KILL_CLOSE_REASON
from tests.panel_helpers import BokehClient, threaded_panel, wait_for


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Empty records of accesses and breakages, and a version check not yet made."""
    monkeypatch.setattr(bokeh_compat, "EXERCISED", set())
    monkeypatch.setattr(bokeh_compat, "BROKEN", {})
    monkeypatch.setattr(bokeh_compat, "_versions_checked", False)
    yield


def test_every_private_access_works_in_a_real_panel_server(fresh: None) -> None:
    """The canary: every entry of ACCESSES, exercised in a real Panel server."""
    import panel as pn

    built: dict[str, Any] = {}
    destroyed: list[str] = []
    ran_with: list[Any] = []

    def app() -> Any:
        session = bokeh_compat.current_session()
        assert session is not None
        built[session.session_id] = session
        assert bokeh_compat.on_session_destroyed(lambda context: destroyed.append(context.id))
        return pn.pane.Markdown("canary")

    try:
        with threaded_panel({"app": app}) as base:
            client = BokehClient(f"{base}/app")
            try:
                sid = client.id
                wait_for(lambda: sid in built, what="the app built")
                session = built[sid]
                assert session.url == f"{base}/app"
                context = bokeh_compat.session_context(session.document)
                assert context is not None and context.id == sid

                # A callback run with the document as curdoc (the dashboard's updates).
                assert bokeh_compat.execute_in_document(
                    session.document, lambda: ran_with.append(pn.state.curdoc)
                )
                wait_for(lambda: ran_with, timeout=5, what="the scheduled callback")
                assert ran_with == [session.document]

                # A coroutine on the session's loop from another thread, which
                # closes the session the way a kill does.
                result: list[bool] = []

                async def close() -> None:
                    result.append(
                        await bokeh_compat.close_session(context, KILL_CLOSE_CODE, KILL_CLOSE_REASON)
                    )

                caller = threading.Thread(target=bokeh_compat.call_soon, args=(session.document, close))
                caller.start()
                caller.join(5)
                assert client.closed.wait(5), "websocket not closed"
                assert (client.close_code, client.close_reason) == (KILL_CLOSE_CODE, KILL_CLOSE_REASON)
                wait_for(lambda: result, timeout=5, what="close_session to finish")
                assert result == [True] and context.destroyed
                assert destroyed == [sid]
            finally:
                client.close()

    except AssertionError as error:
        # Name the access that broke, not only the symptom it caused.
        if bokeh_compat.BROKEN:
            raise AssertionError(f"broken by this Panel/bokeh: {bokeh_compat.BROKEN}") from error
        raise
    assert bokeh_compat.BROKEN == {}, f"broken by this Panel/bokeh: {bokeh_compat.BROKEN}"
    missed = [name for name in bokeh_compat.ACCESSES if name not in bokeh_compat.EXERCISED]
    assert missed == [], f"accesses the canary did not exercise: {missed}"
    assert bokeh_compat.untested(bokeh_compat.installed_versions()) is None, (
        "the installed Panel/bokeh pass the canary: widen bokeh_compat.TESTED"
    )


def test_untested_versions_warn_once_naming_them(
    fresh: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(bokeh_compat, "installed_versions", lambda: {"panel": "2.0.1", "bokeh": "4.0.0"})
    caplog.set_level(logging.WARNING, logger="sessionwatch.panel")
    assert bokeh_compat.current_document() is None  # no session: an access all the same
    assert bokeh_compat.current_session() is None
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert "panel 2.0.1" in warnings[0] and "bokeh 4.0.0" in warnings[0]
    assert "tested with panel 1.9, bokeh 3.9" in warnings[0]


def test_tested_versions_do_not_warn() -> None:
    assert bokeh_compat.untested({"panel": "1.9.4", "bokeh": "3.9.2"}) is None
    assert bokeh_compat.untested({"panel": "1.10.0", "bokeh": "3.9.2"}) is not None
    assert bokeh_compat.untested({"panel": "missing", "bokeh": "3.9.2"}) is not None


class _Gone:
    """A bokeh object from a future version, without the private attributes."""

    destroyed = False
    connection_count = 0


def test_a_broken_access_warns_once_names_it_and_does_not_crash(
    fresh: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sessionwatch.panel")

    class Context:
        session = _Gone()
        server_context = None  # no application_context, no io_loop

    class Document:
        session_context = Context()

    async def nothing() -> None:
        pass

    for _ in range(2):
        assert asyncio.run(bokeh_compat.close_session(Context(), KILL_CLOSE_CODE, "x")) is False
        assert bokeh_compat.call_soon(Document(), nothing) is False
    assert set(bokeh_compat.BROKEN) == {
        "ServerSession._subscribed_connections",
        "ApplicationContext.io_loop.add_callback",
    }
    broken = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(broken) == 2, broken  # once per access, not per call
    assert any("ServerSession._subscribed_connections" in m for m in broken)
    assert all("panel " in m and "bokeh " in m for m in broken)
