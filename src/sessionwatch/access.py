"""Who may do what: the roles, named tokens (their form, their hash, their
names) and the identity a request carries (DESIGN.md, Security).

Roles are cumulative, lowest first: a ``viewer`` reads; an ``agent`` also
pushes (hooks, trackers, runs, agent batches); an ``operator`` also acts
(approve, send, interrupt, stop, resume, start, kill, budget, away,
refresh); ``admin`` (the server's ``--token``) also manages tokens. Named
tokens (``sessionwatch token create``) are viewer, agent or operator.

Light on purpose: ``sessionwatch token`` imports it without the server.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "ADMIN",
    "LOCAL",
    "NAMED_ROLES",
    "ROLES",
    "Identity",
    "Role",
    "allows",
    "hash_token",
    "identity_of",
    "name_problem",
    "new_token",
    "refusal",
    "require",
]

Role = Literal["viewer", "agent", "operator", "admin"]
#: Every role, lowest first: each may do what the ones before it may.
ROLES: Final[tuple[Role, ...]] = ("viewer", "agent", "operator", "admin")
#: The roles a named token may have (admin is the server's ``--token`` only).
NAMED_ROLES: Final[tuple[Role, ...]] = ("viewer", "agent", "operator")
#: Names the audit already uses for something else: never a named token's.
RESERVED_NAMES: Final = frozenset({"admin", "local"})
NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
#: Where a request's identity is kept in its ASGI scope (server/auth.py puts it there).
SCOPE_KEY: Final = "sessionwatch.identity"
#: A new token's prefix, so that secret scanners and people recognise one.
PREFIX: Final = "sw_"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request is: the token's name (the audit's "who") and its role."""

    name: str
    role: Role

    def allows(self, needed: Role) -> bool:
        return allows(self.role, needed)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role}


#: The ``--token``.
ADMIN: Final = Identity("admin", "admin")
#: Everyone, when no token is configured at all (the server is on loopback then).
LOCAL: Final = Identity("local", "admin")


def allows(role: Role, needed: Role) -> bool:
    """Whether ``role`` may do what needs ``needed`` (roles are cumulative)."""
    return ROLES.index(role) >= ROLES.index(needed)


def new_token() -> str:
    """A new named token: 32 random bytes, URL-safe, with a recognisable prefix."""
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """What the store keeps of a token: its SHA-256, in hex.

    Not bcrypt or argon2: those slow down guessing a password a person chose,
    and a token is 32 random bytes no one can guess at any speed; a fast hash
    lets the server check one per request with a dict lookup."""
    return hashlib.sha256(token.encode()).hexdigest()


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a token, or None if it can."""
    if not NAME_RE.fullmatch(name):
        return (
            f"token name {name!r} must be 1 to 64 letters, digits, '.', '_', '@' and '-', "
            "starting with a letter or digit"
        )
    if name.lower() in RESERVED_NAMES:
        return f"token name {name!r} is reserved (the audit uses it for the --token, or for no token)"
    return None


def refusal(ident: Identity, needed: Role, what: str) -> str:
    """The 403's sentence: what needs which role, and what this token is."""
    return f"{what} needs a token with the {needed} role or above; the token {ident.name!r} is {ident.role}"


def require(request: Any, needed: Role, what: str) -> None:
    """Raise a 403 :class:`~sessionwatch.errors.ApiError` unless the request's
    token has ``needed`` (for a route whose role depends on its target, as
    ``DELETE /sessions/{id}``: agent for a Panel session, operator for a managed one)."""
    from sessionwatch.errors import ApiError

    ident = identity_of(request)
    if ident is None:
        raise ApiError(401, "this server needs a token: Authorization: Bearer <token>")
    if not ident.allows(needed):
        raise ApiError(403, refusal(ident, needed, what))


def identity_of(scope: Any) -> Identity | None:
    """The identity the token check gave a request (``Request`` or ASGI scope);
    None on a public path of a server that needs a token."""
    s = getattr(scope, "scope", scope)
    ident: Identity | None = s.get(SCOPE_KEY)
    return ident
