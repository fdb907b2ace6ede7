"""The Panel registry: what a write stores and what a session shows."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sessionwatch.sources.panel.registry import PanelRegistry
from sessionwatch.store.sqlite import Store


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[PanelRegistry]:
    store = await Store.open(tmp_path / "a.db")
    try:
        yield PanelRegistry(store, stale_after_s=60, cleanup_after_s=600)
    finally:
        await store.close()


async def register(reg: PanelRegistry, sid: str, app: str = "app") -> bool:
    return await reg.register(app, session_id=sid, user_id="ann", host="h", pid=7, url=None)


async def test_secrets_typed_into_panel_fields_are_masked(registry: PanelRegistry) -> None:
    await register(registry, "p1", app="reports AKIAIOSFODNN7EXAMPLE")
    await registry.set_status("p1", "running", "deploy --password=hunter22 sk-proj-abcdefghijklmnopqrstuvwx")
    shown = registry.view("p1", time.time())
    assert shown is not None
    text = f"{shown.project} {shown.current_task}"
    for secret in ("AKIAIOSFODNN7EXAMPLE", "hunter22", "abcdefghijklmnopqrstuvwx"):
        assert secret not in text
    assert shown.project.startswith("reports ") and (shown.current_task or "").startswith("deploy")
    # the stored row is untouched: the tracker's own data
    assert registry.rows["p1"].app_name == "reports AKIAIOSFODNN7EXAMPLE"


async def test_reregistering_keeps_status_task_start_and_kill(registry: PanelRegistry) -> None:
    assert await register(registry, "p1")
    started = registry.rows["p1"].started_at
    await registry.set_status("p1", "running", "t")
    await registry.kill("p1", "boss")
    assert not await register(registry, "p1")  # the tracker came back
    (row,) = await registry.store.load_panel()
    assert (row.status, row.current_task, row.started_at, row.kill_requested) == ("running", "t", started, True)


async def test_view_of_one_session_and_of_none(registry: PanelRegistry) -> None:
    await register(registry, "p1")
    now = time.time()
    assert registry.view("ghost", now) is None
    assert registry.view("p1", now) == registry.sessions(now)["p1"]
    assert registry.view("p1", now + 61).status == "stale"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("panel_id", "kept"),
    [
        ("Zr3xQm0xVq1pJvKqN8wWbq3eQFv0rXJ7d2c6L4kYs9Tt", True),  # Bokeh's own
        ("Zr3xQm0xVq1pJvKqN8wWbq3eQFv0rXJ7d2c6L4kYs9Tt.a-b_c", True),  # signed
        ("a/b", False),  # chosen by a client in unsigned mode
        ("stale", False),
    ],
)
def test_tracker_uses_only_ids_the_server_accepts(panel_id: str, kept: bool) -> None:
    from sessionwatch.store.sqlite import session_id_problem
    from sessionwatch.integrations.panel.tracker import _PanelSession, _tracker_id

    sid = _tracker_id(_PanelSession(panel_id, None, None, None))
    assert (sid == panel_id) is kept
    assert session_id_problem(sid) is None
    assert session_id_problem(_tracker_id(None)) is None
