"""Panel sessions reported by trackers: registry, staleness and snapshots.

The rows live in the ``panel_sessions`` table (trackers in direct mode write
it themselves); this registry mirrors it in memory. Heartbeats only move
``last_heartbeat``, which no client sees, so they are batched in memory and
written once per tick: thousands of sessions heartbeating cost one
transaction a second and no events.

Each write costs the same whatever the number of sessions: one statement
naming the columns it changes, and one session's snapshot (:meth:`view`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from sessionwatch.model import NO_TOKENS, Session, iso
from sessionwatch.redact import mask
from sessionwatch.store.sqlite import PanelRow, Store


class PanelRegistry:
    #: This source's name in the facet rules (facets.py).
    name = "panel"

    def __init__(
        self,
        store: Store,
        *,
        stale_after_s: float,
        cleanup_after_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        #: The engine's clock (``Clock.now``): heartbeats, activity, staleness.
        self.clock = clock
        self.stale_after_s = stale_after_s
        self.cleanup_after_s = cleanup_after_s
        self.rows: dict[str, PanelRow] = {}
        self.pending_beats: dict[str, float] = {}

    async def load(self) -> None:
        """Re-read every row (after another process wrote the database)."""
        rows = await self.store.load_panel()
        for row in rows:
            beat = self.pending_beats.get(row.id)
            if beat is not None and beat > row.last_heartbeat:
                row.last_heartbeat = beat
        self.rows = {row.id: row for row in rows}

    # --- tracker operations -----------------------------------------------------------

    async def register(
        self,
        app_name: str,
        *,
        session_id: str,
        user_id: str | None,
        host: str | None,
        pid: int | None,
        url: str | None,
    ) -> bool:
        """Add (or revive) a session; True if it is new."""
        now = self.clock()
        old = self.rows.get(session_id)
        row = PanelRow(
            session_id, app_name, user_id, host, pid, url,
            old.status if old else "idle",
            old.current_task if old else None,
            old.started_at if old else now,
            old.last_activity if old else now,
            now,
            old.kill_requested if old else False,
        )
        await self.store.register_panel(row)
        self.rows[session_id] = row
        self.pending_beats.pop(session_id, None)
        return old is None

    def heartbeat(self, session_id: str) -> bool | None:
        """Note a heartbeat; returns kill_requested, or None if unknown."""
        row = self.rows.get(session_id)
        if row is None:
            return None
        now = self.clock()
        row.last_heartbeat = now
        self.pending_beats[session_id] = now
        return row.kill_requested

    async def flush_heartbeats(self) -> None:
        beats, self.pending_beats = self.pending_beats, {}
        await self.store.touch_heartbeats(beats)

    async def set_status(self, session_id: str, status: str, current_task: str | None) -> bool:
        row = self.rows.get(session_id)
        if row is None:
            return False
        now = self.clock()
        if not await self.store.set_panel_status(session_id, status, current_task, now):
            # deleted by another process since we last read: gone here too
            self.rows.pop(session_id, None)
            self.pending_beats.pop(session_id, None)
            return False
        new = replace(
            row, status=status, current_task=current_task, last_activity=now, last_heartbeat=now
        )
        self.rows[session_id] = new
        self.pending_beats.pop(session_id, None)
        return True

    async def kill(self, session_id: str, by: str | None) -> bool:
        row = self.rows.get(session_id)
        if row is None:
            return False
        await self.store.record_kill(session_id, self.clock(), by)
        row.kill_requested = True
        return True

    async def delete(self, ids: list[str]) -> list[str]:
        gone = [i for i in ids if i in self.rows]
        await self.store.delete_panel(gone)
        for i in gone:
            self.rows.pop(i, None)
            self.pending_beats.pop(i, None)
        return gone

    def stale_ids(self, older_than_s: float, now: float) -> list[str]:
        """Sessions whose last heartbeat is more than ``older_than_s`` ago."""
        return [i for i, r in self.rows.items() if now - r.last_heartbeat > older_than_s]

    # --- views ----------------------------------------------------------------------

    def is_stale(self, row: PanelRow, now: float) -> bool:
        return now - row.last_heartbeat > self.stale_after_s

    def session(self, row: PanelRow, now: float) -> Session:
        stale = self.is_stale(row, now)
        return Session(
            id=row.id,
            source="panel",
            # typed by people: a key pasted into a task name is not shown
            project=mask(row.app_name),
            title=None,
            status="stale" if stale else row.status,  # type: ignore[arg-type]  # checked on the way in
            current_task=mask(row.current_task) if row.current_task else row.current_task,
            user=row.user_id,
            host=row.host,
            git_branch=None,
            model=None,
            version=None,
            started_at=iso(row.started_at),
            last_activity=iso(row.last_activity),
            duration_seconds=round(max(0.0, row.last_activity - row.started_at), 3),
            message_count=0,
            tool_calls=0,
            tokens=NO_TOKENS,
            cost_usd=None,
            kill_requested=row.kill_requested,
            is_stale=stale,
        )

    def sessions(self, now: float) -> dict[str, Session]:
        """Every session: for loading and refreshing only, never per write."""
        return {i: self.session(r, now) for i, r in self.rows.items()}

    def view(self, session_id: str, now: float) -> Session | None:
        """One session's snapshot, or None if it is not registered."""
        row = self.rows.get(session_id)
        return self.session(row, now) if row is not None else None

    #: The Panel facet of an id (facets.py): the row, as the registry shows it.
    facet = view

    def ids(self) -> list[str]:
        return list(self.rows)

    def claims(self, sid: str) -> bool:
        return sid in self.rows
