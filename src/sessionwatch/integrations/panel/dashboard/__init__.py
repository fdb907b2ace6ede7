"""The Panel dashboard: every session of a sessionwatch server, live.

    sessionwatch dashboard --server-url http://127.0.0.1:8765 --port 5007

It is a client of the server's HTTP API like any other (no database
access), in four parts:

- :mod:`.feed`: :class:`Feed`, the one connection to the server per dashboard
  process, driving :mod:`sessionwatch.clients.feed`'s machine (the web page's
  fallback rules) with the rest of :mod:`sessionwatch.clients`;
- :mod:`.rows`: what a session looks like in the table, the filters and
  search, the diff between two tables (no Panel);
- :mod:`.view`: :class:`DashboardView`, one browser tab's widgets, updated in
  place from the feed;
- :mod:`.app`: serving it (:func:`serve_dashboard`, :func:`main`).
"""

from __future__ import annotations

# Imported here so that `sessionwatch dashboard` reports a missing Panel at once.
import panel  # noqa: F401

from sessionwatch.integrations.panel.dashboard.app import create_app, main, serve_dashboard
from sessionwatch.integrations.panel.dashboard.feed import Feed
from sessionwatch.integrations.panel.dashboard.rows import (
    KILL_BUTTON,
    KILL_PENDING,
    STATUS_COLOURS,
    Filters,
    diff_rows,
    search_matches,
    session_row,
)
from sessionwatch.integrations.panel.dashboard.view import DashboardView

__all__ = [
    "KILL_BUTTON",
    "KILL_PENDING",
    "STATUS_COLOURS",
    "DashboardView",
    "Feed",
    "Filters",
    "create_app",
    "diff_rows",
    "main",
    "search_matches",
    "serve_dashboard",
    "session_row",
]
