"""Away mode and approvals through the API, for the dashboards and other clients.

``GET`` / ``PUT /away`` and ``POST /sessions/{id}/approve`` (DESIGN.md, HTTP),
on a :class:`~sessionwatch.clients.http.SyncApi`; errors are that module's
(:class:`ApiError` carries the server's sentence, e.g. the 409 "that prompt
is no longer pending (...)").
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote

from sessionwatch.clients.http import ServerUnreachable, SyncApi

__all__ = ["Decision", "approve", "approve_body", "get_away", "set_away"]

Decision = Literal["allow", "deny"]


def _json(api: SyncApi, method: str, path: str, body: Any = None) -> dict[str, Any]:
    response = api.request(method, path, json=body)
    try:
        data = response.json()
    except ValueError as error:
        raise ServerUnreachable(api.base_url, "its answer is not JSON") from error
    if not isinstance(data, dict):
        raise ServerUnreachable(api.base_url, "its answer is not a JSON object")
    return data


def get_away(api: SyncApi) -> dict[str, Any]:
    """``GET /away``: ``{"on", "changed_at", "by", "approval_wait_s", "waiting": [...]}``."""
    return _json(api, "GET", "/away")


def set_away(api: SyncApi, on: bool) -> dict[str, Any]:
    """``PUT /away {"on": on}``; the switch as the server now has it."""
    return _json(api, "PUT", "/away", {"on": bool(on)})


def approve_body(pending_id: str, decision: Decision, message: str | None = None) -> dict[str, Any]:
    """The body of ``POST /sessions/{id}/approve``: a deny's message trimmed, left out when empty.

    >>> approve_body("p1", "deny", "  not today ")
    {'pending_id': 'p1', 'decision': 'deny', 'message': 'not today'}
    >>> approve_body("p1", "allow", "ignored")
    {'pending_id': 'p1', 'decision': 'allow'}
    """
    if decision not in ("allow", "deny"):
        raise ValueError(f"decision must be allow or deny, not {decision!r}")
    body: dict[str, Any] = {"pending_id": pending_id, "decision": decision}
    text = (message or "").strip()
    if decision == "deny" and text:
        body["message"] = text
    return body


def approve(api: SyncApi, session_id: str, pending_id: str, decision: Decision, message: str | None = None) -> dict[str, Any]:
    """Answer a held permission prompt; the recorded decision."""
    path = f"/sessions/{quote(session_id, safe='')}/approve"
    return _json(api, "POST", path, approve_body(pending_id, decision, message))
