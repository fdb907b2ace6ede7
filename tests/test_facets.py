"""One row per id: the ownership table and the projection, and a third
source plugged in with its facets and rule entries alone (as the hooks and
managed-process sources will), the Claude and Panel sources untouched."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sessionwatch.config import Settings
from sessionwatch.engine import Engine
from sessionwatch.errors import IdTaken
from sessionwatch.facets import RULES, Facet, Rules
from sessionwatch.model import Session

from .sessions import session
from .test_claude import user


def test_claude_owns_an_id_before_panel_and_each_owns_its_fields() -> None:
    claude = session("x", source="claude", title="from the transcript")
    panel = session("x", source="panel", current_task="from the tracker")
    assert RULES.project({"claude": claude, "panel": panel}) is claude
    assert RULES.project({"panel": panel}) is panel
    assert RULES.project({}) is None


def test_a_field_table_entry_that_names_no_field_is_refused() -> None:
    with pytest.raises(ValueError, match="statuss"):
        Rules(fields={"statuss": ("toy",)})


#: A third source: it may own an id after Claude and before Panel, and its
#: status and current task win over the owner's.
TOY_RULES = Rules(
    owners=("claude", "toy", "panel"),
    fields={"status": ("toy",), "current_task": ("toy",)},
)


def test_a_third_sources_fields_go_over_the_owners_row() -> None:
    claude = session("x", title="t", status="idle")
    shown = TOY_RULES.project({"claude": claude, "toy": {"status": "running"}})
    assert shown == msgspec.structs.replace(claude, status="running")
    # a partial facet never makes a row by itself
    assert TOY_RULES.project({"toy": {"status": "running"}}) is None
    # the owner's own value stands when it is listed first
    rules = Rules(owners=("claude", "toy"), fields={"status": ("claude", "toy")})
    assert rules.project({"claude": claude, "toy": {"status": "running"}}) is claude


class Toy:
    """A push source: what it knows, by id, changed only through the engine."""

    name = "toy"

    def __init__(self) -> None:
        self.known: dict[str, Facet] = {}

    def facet(self, sid: str, now: float) -> Facet | None:
        return self.known.get(sid)

    def ids(self) -> Iterable[str]:
        return list(self.known)

    def claims(self, sid: str) -> bool:
        return isinstance(self.known.get(sid), Session)

    def put(self, sid: str, facet: Facet | None) -> list[str]:
        if facet is None:
            self.known.pop(sid, None)
        else:
            self.known[sid] = facet
        return [sid]


def toy_row(sid: str, **kw: Any) -> Session:
    return session(sid, source="toy", **kw)


def fields(s: Session | None) -> Mapping[str, Any]:
    assert s is not None
    return msgspec.structs.asdict(s)


async def test_a_third_source_plugs_in_with_facets_and_rules_only(tmp_path: Path) -> None:
    root = tmp_path / "projects"
    (root / "p").mkdir(parents=True)
    (root / "p" / "c1.jsonl").write_bytes(user("hi", sessionId="c1"))
    engine = Engine(Settings(projects_dir=root, db=tmp_path / "x.db"), rules=TOY_RULES)
    toy = Toy()
    engine.add_source(toy)
    await engine.open()
    sessions = engine.hub.sessions
    try:
        # its fields over a Claude row: still the Claude session
        before = sessions["c1"]
        await engine.changed("toy", lambda: toy.put("c1", {"status": "waiting", "current_task": "Bash"}))
        assert fields(sessions["c1"]) == {**fields(before), "status": "waiting", "current_task": "Bash"}
        async def forget() -> list[str]:  # a source's change may await (its store, say)
            return toy.put("c1", None)

        await engine.changed("toy", forget)
        assert sessions["c1"] == before
        # a row of its own, which Panel cannot take; its fields stay its own
        await engine.changed("toy", lambda: toy.put("t1", toy_row("t1", title="mine")))
        assert sessions["t1"].source == "toy"  # type: ignore[comparison-overlap]
        with pytest.raises(IdTaken):
            await engine.register("app", session_id="t1", user_id=None, host=None, pid=None, url=None)
        assert "t1" not in engine.panel.rows
        # an id Panel had: the toy, ranked before it, shows; Panel's writes
        # change nothing shown, and its row comes back when the toy lets go
        await engine.register("app", session_id="p1", user_id=None, host=None, pid=None, url=None)
        assert sessions["p1"].source == "panel"
        await engine.changed("toy", lambda: toy.put("p1", toy_row("p1", title="took it")))
        assert sessions["p1"].title == "took it"
        assert await engine.set_status("p1", "running", "panel's task")
        assert sessions["p1"].title == "took it"
        await engine.changed("toy", lambda: toy.put("p1", None))
        assert (sessions["p1"].source, sessions["p1"].current_task) == ("panel", "panel's task")
        await engine.changed("toy", lambda: toy.put("p1", toy_row("p1", title="took it")))
        await engine.delete(["p1"])  # Panel's row goes, the toy's stays
        assert sessions["p1"].title == "took it" and "p1" not in engine.panel.rows
        # loading and refreshing see it too
        await engine.rescan()
        assert set(sessions) == {"c1", "t1", "p1"}
    finally:
        await engine.close()
