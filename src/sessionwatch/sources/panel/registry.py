"""Panel sessions reported by trackers: registry, staleness and snapshots.

The rows live in the ``panel_sessions`` table (trackers in direct mode write
it themselves); this registry mirrors it in memory. Heartbeats only move
``last_heartbeat``, which no client sees, so they are batched in memory and
written once per tick: thousands of sessions heartbeating cost one
transaction a second and no events.

Each write costs the same whatever the number of sessions: one statement
naming the columns it changes, and one session's snapshot (:meth:`view`).
A write's statements come from the store (``SharedStore.panel_*``) and are
run by ``publish`` with the events of the change (the engine passes
``hub.update(…, writes=…)``: one transaction, one trip); the new row is in
:attr:`rows` while they run, so the snapshot shows it, and is taken back if
they fail. Without ``publish`` the store runs them alone.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from sessionwatch.model import NO_TOKENS, PANEL_CONTROLS, Session, iso
from sessionwatch.redact import mask
from sessionwatch.store.base import PanelRow, RowGone, SharedStore, Write

#: Runs a write's statements with the events of the change they make.
Publish = Callable[[list[Write]], Awaitable[object]]


class PanelRegistry:
    #: This source's name in the facet rules (facets.py).
    name = "panel"

    def __init__(
        self,
        store: SharedStore,
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
        publish: Publish | None = None,
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
        await self._change(row, self.store.panel_register(row), publish)
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

    async def set_status(
        self, session_id: str, status: str, current_task: str | None, *, publish: Publish | None = None
    ) -> bool:
        row = self.rows.get(session_id)
        if row is None:
            return False
        now = self.clock()
        new = replace(row, status=status, current_task=current_task, last_activity=now, last_heartbeat=now)
        try:
            await self._change(new, self.store.panel_status(session_id, status, current_task, now), publish)
        except RowGone:
            # deleted by another process since we last read: gone here too
            self.forget([session_id])
            return False
        return True

    async def kill(self, session_id: str, by: str | None, *, publish: Publish | None = None) -> bool:
        row = self.rows.get(session_id)
        if row is None:
            return False
        await self._change(
            replace(row, kill_requested=True), self.store.panel_kill(session_id, self.clock(), by), publish, beats=False
        )
        return True

    async def delete(self, ids: Sequence[str], *, publish: Publish | None = None) -> list[str]:
        """Delete the registered ones among ``ids``; returns them. Their rows
        are gone from memory while ``publish`` runs the writes (with the
        events of the change) and come back if the writes fail."""
        gone = [i for i in ids if i in self.rows]
        if not gone:
            return []
        rows = {i: self.rows.pop(i) for i in gone}
        beats = {i: self.pending_beats.pop(i) for i in gone if i in self.pending_beats}
        try:
            await (publish or self.store.write)(self.store.panel_delete(gone))
        except BaseException:
            for i, row in rows.items():
                self.rows.setdefault(i, row)
            for i, beat in beats.items():
                self.pending_beats.setdefault(i, beat)
            raise
        return gone

    def forget(self, ids: Sequence[str]) -> None:
        for i in ids:
            self.rows.pop(i, None)
            self.pending_beats.pop(i, None)

    async def _change(
        self, row: PanelRow, writes: list[Write], publish: Publish | None, *, beats: bool = True
    ) -> None:
        """Run ``writes`` (through ``publish``) with ``row`` in place of the
        session's row meanwhile; what was there comes back if they fail.
        ``beats``: the writes set ``last_heartbeat`` (a pending one is moot)."""
        sid = row.id
        old = self.rows.get(sid)
        beat = self.pending_beats.pop(sid, None) if beats else None
        self.rows[sid] = row
        try:
            await (publish or self.store.write)(writes)
        except BaseException:
            if self.rows.get(sid) is row:
                if old is None:
                    self.rows.pop(sid, None)
                else:
                    self.rows[sid] = old
            if beat is not None:
                self.pending_beats.setdefault(sid, beat)
            raise

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
            status_reason="heartbeat missed" if stale else None,
            controls=PANEL_CONTROLS,
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
