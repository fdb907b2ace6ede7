"""The Session contract as one type: the JSON clients get is what they got
when sessions were dicts encoded with orjson, byte for byte."""

from __future__ import annotations

import random
import shutil
import struct
import time
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from sessionwatch.model import FIELDS, PANEL_SETTABLE, STATUSES, Session, Tokens, encode, iso, to_dict
from sessionwatch.prices import PriceTable
from sessionwatch.sources.claude.index import ClaudeIndex
from sessionwatch.sources.panel.registry import PanelRegistry
from sessionwatch.store.sqlite import Store

from .conftest import FIXTURES
from .sessions import session

#: The keys of the dicts ``index.py`` and ``panel.py`` built, in their order.
TODAY = (
    "id", "source", "project", "title", "status", "current_task", "user", "host", "git_branch",
    "model", "version", "started_at", "last_activity", "duration_seconds", "message_count",
    "tool_calls", "tokens", "cost_usd", "kill_requested", "is_stale",
)
#: Issue 10's fields, appended after today's (DESIGN.md, Session).
ISSUE10 = ("status_reason", "pending", "controls", "managed", "max_cost_usd")


def old_json(s: Session) -> bytes:
    """What the server wrote before: orjson over a dict with the same values."""
    d: dict[str, Any] = {k: getattr(s, k) for k in TODAY}
    t = s.tokens
    d["tokens"] = {"input": t.input, "output": t.output, "cache_creation": t.cache_creation, "cache_read": t.cache_read}
    d.update(status_reason=s.status_reason, pending=None, controls=list(s.controls), managed=None, max_cost_usd=s.max_cost_usd)
    return orjson.dumps({"type": "session-updated", "sessions": [d], "timestamp": 1732262400.123456})


def new_json(s: Session) -> bytes:
    return encode({"type": "session-updated", "sessions": [s], "timestamp": 1732262400.123456})


def test_fields_are_todays_in_todays_order() -> None:
    assert FIELDS == TODAY + ISSUE10
    assert Tokens.__struct_fields__ == ("input", "output", "cache_creation", "cache_read")
    assert to_dict(session("a")) == orjson.loads(encode(session("a")))


def test_statuses_are_spelled_once() -> None:
    assert set(PANEL_SETTABLE) < set(STATUSES)
    root = Path(__file__).parent.parent / "src" / "sessionwatch"
    for path in root.rglob("*.py"):
        if path.name == "model.py":
            continue
        text = path.read_text()
        for literal in ('("idle", "running")', "STATUSES = ("):
            assert literal not in text, f"{path} spells statuses"


async def test_real_sessions_encode_as_before(tmp_path: Path) -> None:
    """Every session of the fixtures corpus and Panel rows with typed text."""
    shutil.copytree(FIXTURES, tmp_path / "projects")
    index = ClaudeIndex(tmp_path / "projects", PriceTable.embedded())
    index.scan()
    now = time.time()
    sessions = [s for sid in index.session_ids() if (s := index.facet(sid, now)) is not None]
    assert len(sessions) >= 10
    store = await Store.open(tmp_path / "a.db")
    try:
        reg = PanelRegistry(store, stale_after_s=60, cleanup_after_s=600)
        await reg.register("rép\u2028orts 📈 </script>", session_id="p1", user_id="ann", host=None, pid=None, url=None)
        await reg.set_status("p1", "running", 'a "quoted"\ttask\x00\x1f')
        sessions += [reg.view("p1", now), reg.view("p1", now + 3600)]  # type: ignore[list-item]
    finally:
        await store.close()
    for s in sessions:
        assert new_json(s) == old_json(s)


@pytest.mark.parametrize("seed", range(3))
def test_values_of_every_kind_encode_as_before(seed: int) -> None:
    rnd = random.Random(seed)

    def text() -> str | None:
        if rnd.random() < 0.2:
            return None
        chars = (rnd.choice([rnd.randrange(0, 0x80), rnd.randrange(0x80, 0x3000), 0x1F600, 0x2028]) for _ in range(30))
        return "".join(map(chr, chars))[: rnd.randrange(0, 30)]

    def number() -> float:
        return round(rnd.random() * rnd.choice([1e-9, 1e-6, 1, 1e3, 1e9, 1e15]), rnd.randrange(0, 10))

    for _ in range(2000):
        s = session(
            text() or "x", project=text() or "", title=text(), current_task=text(), user=text(),
            started_at=iso(rnd.uniform(0, 4e9)), last_activity=iso(rnd.uniform(0, 4e9)),
            duration_seconds=number(), message_count=rnd.randrange(0, 2**40),
            tokens=Tokens(*(rnd.randrange(0, 2**53) for _ in range(4))),
            cost_usd=None if rnd.random() < 0.2 else number(), kill_requested=rnd.random() < 0.5,
            is_stale=rnd.random() < 0.5, status=rnd.choice(STATUSES),
        )
        assert new_json(s) == old_json(s)


def test_the_one_difference_is_floats_no_session_reaches() -> None:
    """msgspec writes 1e16 and above without the exponent's ``+`` orjson wrote:
    a cost of ten quadrillion dollars. Every float below encodes alike
    (random bit patterns, not just round numbers)."""
    big = session("a", cost_usd=1e16)
    assert old_json(big).replace(b"1e+16", b"1e16") == new_json(big)
    assert msgspec.json.decode(new_json(big)) == orjson.loads(old_json(big))
    rnd = random.Random(7)
    for _ in range(100_000):
        x = struct.unpack("d", rnd.randbytes(8))[0]
        if x != x or abs(x) >= 1e16 or x in (float("inf"), float("-inf")):
            continue
        assert encode(x) == orjson.dumps(x), x
