"""Serving the dashboard: ``sessionwatch dashboard``."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import panel

from sessionwatch.integrations.panel.dashboard.feed import Feed
from sessionwatch.integrations.panel.dashboard.view import DashboardView

__all__ = ["create_app", "main", "serve_dashboard"]

log = logging.getLogger("sessionwatch.dashboard")


def create_app(feed: Feed, server_url: str, token: str | None = None) -> Any:
    """Build one dashboard tab (call inside a Panel session)."""
    return DashboardView(feed, server_url, token).layout


def serve_dashboard(
    server_url: str,
    port: int,
    token: str | None = None,
    show: bool = False,
    *,
    address: str = "127.0.0.1",
    threaded: bool = False,
) -> Any:
    """Serve the dashboard on `port` (blocking unless `threaded`).

    Returns the Panel server (or its thread when `threaded`).
    """
    pn: Any = panel  # untyped constructors: the module as Any
    pn.extension("tabulator", notifications=True)
    feed = Feed(server_url, token).start()
    origins = [f"127.0.0.1:{port}", f"localhost:{port}"]
    if address not in ("127.0.0.1", "localhost", "0.0.0.0", "::"):
        origins.append(f"{address}:{port}")
    try:
        return pn.serve(
            {"/": lambda: create_app(feed, server_url, token)},
            port=port,
            address=address,
            websocket_origin=origins,
            show=show,
            title="sessionwatch",
            threaded=threaded,
            verbose=False,
        )
    finally:
        if not threaded:
            feed.stop()


def main(server_url: str, port: int, token: str | None) -> None:
    """`sessionwatch dashboard`: serve until Ctrl-C."""
    print(f"sessionwatch dashboard for {server_url} at http://127.0.0.1:{port}/", flush=True)
    started = time.monotonic()
    with contextlib.suppress(KeyboardInterrupt):
        serve_dashboard(server_url, port, token)
    log.debug("dashboard ran %.0f s", time.monotonic() - started)
