"""The tracker Panel apps embed: ``from sessionwatch.tracker import SessionTracker``.

This is the public, stable import path; the code lives in
:mod:`sessionwatch.integrations.panel.tracker`.
"""

from sessionwatch.integrations.panel.tracker import (
    AUTH_RETRY_S,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_SERVER_URL,
    KILL_CLOSE_CODE,
    KILL_CLOSE_REASON,
    PANEL_SCHEMA,
    SessionTracker,
)

__all__ = [
    "AUTH_RETRY_S",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_SERVER_URL",
    "KILL_CLOSE_CODE",
    "KILL_CLOSE_REASON",
    "PANEL_SCHEMA",
    "SessionTracker",
]
