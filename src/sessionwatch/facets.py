"""One row per id, facets per source: who owns an id, who owns a field, and
the one projection that makes a Session of what the sources know.

A source attaches what it knows about a session id as a *facet*:

- a whole :class:`Session` when the source can show the session on its own
  (the Claude index from a transcript, the Panel registry from a tracker's
  row): it may then own the id;
- a mapping of some fields when it only knows those (a source that knows a
  session's live status but not its transcript, say).

:data:`RULES` is the one table. ``owners``: the sources that may own an id,
first first; the owner's facet is the row, and a later source's facet for
the same id changes nothing but the fields ``fields`` gives it. So no source
can create, shadow or delete another's session: a Panel row whose id a
transcript claims stays hidden while the transcript is there, and shows again
when it goes. ``fields``: per field, the sources whose value wins over the
owner's, first first; a field not named is the owner's.

A new source plugs in with its facets and its entries here (e.g. a hooks
source: an owner between ``claude`` and ``panel``, and ``status`` from
``hooks`` first), without touching the others; tests/test_facets.py does it
with a toy one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from sessionwatch.model import Session

Facet = Session | Mapping[str, Any]


class FacetSource(Protocol):
    """What the engine asks a source about one id."""

    #: The source's name in :class:`Rules` (and, for owners, ``Session.source``).
    name: str

    def facet(self, sid: str, now: float) -> Facet | None:
        """What the source knows of ``sid`` at ``now``; None if nothing."""

    def ids(self) -> Iterable[str]:
        """Every id the source has a facet for (loading and ``refresh`` only)."""

    def claims(self, sid: str) -> bool:
        """Whether the source holds ``sid`` even before it has a facet for it
        (a transcript without a timestamped line yet): no later source may
        take the id."""


@dataclass(frozen=True)
class Rules:
    owners: tuple[str, ...] = ("claude", "panel")
    fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.fields) - set(Session.__struct_fields__)
        if unknown:
            raise ValueError(f"no such Session field: {sorted(unknown)}")

    def rank(self, source: str) -> int:
        """Where ``source`` stands among the owners (len(owners) if it owns nothing)."""
        try:
            return self.owners.index(source)
        except ValueError:
            return len(self.owners)

    def outranked(self, source: str, sid: str, sources: list[FacetSource]) -> bool:
        """Whether a source before ``source`` holds ``sid`` (so ``source`` may
        not make a row with it)."""
        mine = self.rank(source)
        return any(self.rank(s.name) < mine and s.claims(sid) for s in sources)

    def project(self, facets: Mapping[str, Facet]) -> Session | None:
        """The row for one id from every source's facet; None if no source
        that may own the id has a whole session for it."""
        base: Session | None = None
        owner = ""
        for name in self.owners:
            f = facets.get(name)
            if isinstance(f, Session):
                base, owner = f, name
                break
        if base is None:
            return None
        changes: dict[str, Any] = {}
        for name_of_field, sources in self.fields.items():
            for name in sources:
                if name == owner:
                    break  # the owner's own value wins from here
                f = facets.get(name)
                if f is None:
                    continue
                if isinstance(f, Session):
                    value = getattr(f, name_of_field)
                elif name_of_field in f:
                    value = f[name_of_field]
                else:
                    continue
                if value != getattr(base, name_of_field):
                    changes[name_of_field] = value
                break
        return msgspec.structs.replace(base, **changes) if changes else base


#: The table. Owners: a Claude transcript, then the hooks (a session that sent
#: SessionStart before its transcript exists), then the live registry (a CLI
#: process with neither yet), then a Panel tracker. Fields: a gone process
#: ("live": ``ended``, "process exited") beats what the hooks last said, which
#: beats the transcript's guess; the live registry's own status speaks only
#: where the hooks said nothing (sources/claude/live.py). The control source
#: (sessionwatch/control) gives the spend cap in force and, past it, "budget
#: reached" as the reason (its facet has no ``status_reason`` otherwise, so the
#: next source's wins); a gone process's "process exited" stays first.
#: A managed process (sessionwatch/managed: one the server runs, or a
#: ``sessionwatch run``) speaks stream-json, which is exact: its facet comes
#: first for the fields it gives, and it owns a row before the transcript.
#: A session an agent pushed (sessionwatch/agents: another machine's session,
#: already projected there from its own transcript, hooks, registry and
#: control) is owned by ``agents``: after the server's own first-hand sources
#: (an id the server sees itself is fresher there than relayed, and a relayed
#: copy must not shadow it), before Panel trackers (a tracker cannot take a
#: Claude session's id). Its facet is the whole row, so no field rule names it.
RULES = Rules(
    owners=("claude", "managed", "hooks", "live", "agents", "panel"),
    fields={
        "status": ("managed", "live", "hooks"),
        "status_reason": ("managed", "live", "control", "hooks"),
        "pending": ("managed", "live", "hooks"),
        "controls": ("managed", "live", "hooks"),
        "last_activity": ("managed", "hooks"),
        "max_cost_usd": ("managed", "control"),
        "managed": ("managed",),
        "current_task": ("managed",),
        "user": ("managed",),
    },
)
