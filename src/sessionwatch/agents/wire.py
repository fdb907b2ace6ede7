"""The agents' wire format (DESIGN.md, Agents and replicas), validated.

A push (``POST /agents/push``)::

    {"agent": "<stable id>", "host": "<machine name>", "seq": n,
     "upserts": [Session, ...], "deletes": ["<id>", ...],
     "sync": ["<id>", ...]}           # optional: every id the agent has now

``seq`` orders an agent's batches; a batch whose ``seq`` the server already
applied changes nothing (a batch re-sent after a lost answer), but still
counts as a sign of life: an agent with nothing new re-sends its last ``seq``
with no sessions as its heartbeat. ``sync`` (sent after the agent starts):
the server forgets this agent's sessions not named in it.

The answer: ``{"seq": <last applied>, "duplicate": bool, "heartbeat_s": s,
"resync": bool}`` (``resync``: the server knows nothing of this agent, so
send every session again with ``sync``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from sessionwatch.errors import ApiError
from sessionwatch.model import Session

#: An agent id or host name: what fits in a URL path segment and a log line.
NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
MAX_SESSIONS: Final = 10_000
MAX_SEQ: Final = 2**63 - 1
MAX_ID: Final = 200


@dataclass(frozen=True)
class Push:
    agent: str
    host: str
    seq: int
    upserts: list[Session]
    deletes: list[str]
    sync: list[str] | None


def name_problem(what: str, value: object) -> str | None:
    if not isinstance(value, str):
        return f"{what} must be a string"
    if not NAME_RE.fullmatch(value):
        return f"{what} must be 1 to 128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit"
    return None


def _ids(data: dict[str, Any], key: str) -> list[str] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(i, str) and 0 < len(i) <= MAX_ID for i in value):
        raise ApiError(400, f"{key} must be a list of session ids (strings of 1 to {MAX_ID} characters)")
    if len(value) > MAX_SESSIONS:
        raise ApiError(400, f"at most {MAX_SESSIONS} {key} per batch")
    return value


#: What :func:`parse_push` takes, for ``GET /openapi.json``.
PUSH_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["agent", "host", "seq"],
    "properties": {
        "agent": {"type": "string", "pattern": f"^{NAME_RE.pattern}$", "description": "the agent's id"},
        "host": {"type": "string", "pattern": f"^{NAME_RE.pattern}$", "description": "the machine's name"},
        "seq": {"type": "integer", "minimum": 0, "maximum": MAX_SEQ, "description": "applied once, in order"},
        "upserts": {"type": "array", "maxItems": MAX_SESSIONS, "items": {"$ref": "#/components/schemas/Session"}},
        "deletes": {"type": "array", "maxItems": MAX_SESSIONS, "items": {"type": "string"}},
        "sync": {"type": ["array", "null"], "maxItems": MAX_SESSIONS, "items": {"type": "string"},
                 "description": "every id the agent has: the others of this agent are deleted"},
    },
}


def parse_push(data: dict[str, Any]) -> Push:
    """A push body, or an ApiError (400) with one sentence saying what is wrong."""
    for key in ("agent", "host"):
        if key not in data:
            raise ApiError(400, f"{key} is required")
        problem = name_problem(key, data[key])
        if problem:
            raise ApiError(400, problem)
    seq = data.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ:
        raise ApiError(400, "seq must be an integer, 0 or more")
    raw = data.get("upserts", [])
    if not isinstance(raw, list):
        raise ApiError(400, "upserts must be a list of sessions")
    if len(raw) > MAX_SESSIONS:
        raise ApiError(400, f"at most {MAX_SESSIONS} upserts per batch")
    upserts: list[Session] = []
    for i, item in enumerate(raw):
        try:
            s = msgspec.convert(item, Session)
        except msgspec.ValidationError as exc:
            raise ApiError(400, f"upserts[{i}] is not a session: {exc}") from None
        if not 0 < len(s.id) <= MAX_ID:
            raise ApiError(400, f"upserts[{i}].id must be 1 to {MAX_ID} characters")
        upserts.append(s)
    return Push(data["agent"], data["host"], seq, upserts, _ids(data, "deletes") or [], _ids(data, "sync"))
