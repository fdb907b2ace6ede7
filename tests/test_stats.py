"""``GET /stats`` (server/stats.py) against the fixture transcripts.

Expectations are computed here from the JSONL itself, with code of the test's
own: every assistant line with usage and a real model, one response counted
once per file (lines sharing ``message.id`` + ``requestId``, each field's
largest value), on the local day of the response's first line. Prices come
from the same PriceTable the server uses (the price lookup is tested in
test_prices.py); what is checked here is which tokens land in which day,
model and project.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from sessionwatch.model import STATUSES
from sessionwatch.prices import PriceTable
from sessionwatch.server.stats import compute
from sessionwatch.sources.claude.files import FileState
from sessionwatch.sources.claude.index import ClaudeIndex

from .conftest import FIXTURES, Server, free_port

TOKENS = ("input", "output", "cache_creation", "cache_read")


@pytest.fixture(params=["UTC", "Asia/Kolkata", "America/St_Johns"])
def local_tz(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Local days in UTC, +05:30 and -03:30 (-02:30 in summer): quarter hours, not whole hours."""
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def owner(path: Path, root: Path) -> str | None:
    """The session a transcript file adds up to (by the folder layout, not the index)."""
    rel = path.relative_to(root).parts
    if len(rel) == 2 and not rel[1].startswith("agent-"):
        return path.stem
    if len(rel) == 4 and rel[2] == "subagents":
        return rel[1]
    if len(rel) == 2:  # flat agent-*.jsonl: the session named in its lines
        for raw in path.read_bytes().splitlines():
            try:
                sid = json.loads(raw).get("sessionId")
            except (ValueError, AttributeError):
                continue
            if sid:
                return str(sid)
    return None


def responses(path: Path) -> list[tuple[str, float | None, list[int]]]:
    """(model, time of the first line, [input, output, cache_5m, cache_1h, cache_read]) per response."""
    found: dict[Any, tuple[str, float | None, list[int]]] = {}
    order: list[Any] = []
    for n, raw in enumerate(path.read_bytes().splitlines()):
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(line, dict) or line.get("type") != "assistant":
            continue
        msg = line.get("message")
        if not isinstance(msg, dict):
            continue
        model, usage = msg.get("model"), msg.get("usage")
        if not model or model == "<synthetic>" or not isinstance(usage, dict):
            continue
        split = usage.get("cache_creation") or None
        total = usage.get("cache_creation_input_tokens") or 0
        if split is not None:
            w1 = split.get("ephemeral_1h_input_tokens") or 0
            w5 = split.get("ephemeral_5m_input_tokens") or 0
            if total > w5 + w1:
                w5 = total - w1
        else:
            w5, w1 = total, 0
        values = [usage.get("input_tokens") or 0, usage.get("output_tokens") or 0, w5, w1, usage.get("cache_read_input_tokens") or 0]
        key = (msg["id"], line.get("requestId")) if msg.get("id") else n
        stamp = line.get("timestamp")
        if key in found:
            m, t, old = found[key]
            found[key] = (m, t, [max(a, b) for a, b in zip(old, values)])
        else:
            found[key] = (model, _ts(stamp) if stamp else None, values)
            order.append(key)
    return [found[k] for k in order]


def expected(root: Path, projects: dict[str, str], today: date) -> dict[str, dict[str, dict[str, dict[str, int]]]]:
    """period → "by_model"/"by_project" → name → tokens."""
    out: dict[str, Any] = {p: {"by_model": defaultdict(lambda: dict.fromkeys(TOKENS, 0)), "by_project": defaultdict(lambda: dict.fromkeys(TOKENS, 0))} for p in ("today", "last_7_days", "all")}
    for path in sorted(root.rglob("*.jsonl")):
        sid = owner(path, root)
        if sid not in projects:
            continue
        for model, when, (i, o, w5, w1, cr) in responses(path):
            periods = ["all"]
            if when is not None:
                day = datetime.fromtimestamp(when).date()  # local
                if today - timedelta(days=6) <= day <= today:
                    periods.append("last_7_days")
                if day == today:
                    periods.append("today")
            for period in periods:
                for group, name in (("by_model", model), ("by_project", projects[sid])):
                    t = out[period][group][name]
                    t["input"] += i
                    t["output"] += o
                    t["cache_creation"] += w5 + w1
                    t["cache_read"] += cr
    return {p: {g: {k: dict(v) for k, v in groups.items()} for g, groups in out[p].items()} for p in out}


def tokens_of(usage: dict[str, Any], group: str) -> dict[str, dict[str, int]]:
    return {name: entry["tokens"] for name, entry in usage[group].items()}


@pytest.fixture
def index(tmp_path: Path) -> tuple[Path, ClaudeIndex]:
    root = tmp_path / "projects"
    shutil.copytree(FIXTURES, root)
    idx = ClaudeIndex(root, PriceTable.embedded())
    idx.settle_s = 0.0
    idx.scan()
    return root, idx


def busiest_day(root: Path) -> date:
    days: dict[date, int] = defaultdict(int)
    for path in root.rglob("*.jsonl"):
        for _, when, _ in responses(path):
            if when is not None:
                days[datetime.fromtimestamp(when).date()] += 1
    return max(days, key=lambda d: days[d])


def test_tokens_by_day_model_and_project_match_the_transcripts(index: tuple[Path, ClaudeIndex], local_tz: str) -> None:
    root, idx = index
    day = busiest_day(root)
    now = datetime(day.year, day.month, day.day, 23, 59).timestamp()  # local: the day's last minute
    sessions = {sid: s for sid in idx.session_ids() if (s := idx.facet(sid, now)) is not None}
    projects = {sid: s.project for sid, s in sessions.items()}
    got = compute(sessions, idx, idx.prices, now)
    want = expected(root, projects, day)
    assert got["today"] == day.isoformat()
    for period in ("today", "last_7_days", "all"):
        for group in ("by_model", "by_project"):
            assert tokens_of(got["usage"][period], group) == want[period][group], (period, group)
    assert want["today"]["by_model"], "the chosen day has usage"
    assert want["all"] != want["last_7_days"], "some usage falls outside the week"
    # the all-time figures are the sessions' own
    all_usage = got["usage"]["all"]
    for key in TOKENS:
        assert all_usage["tokens"][key] == sum(getattr(s.tokens, key) for s in sessions.values())
    priced = [s.cost_usd for s in sessions.values() if s.cost_usd is not None]
    assert all_usage["cost_usd"] == pytest.approx(sum(priced), abs=1e-5)
    for project in {s.project for s in sessions.values()}:
        costs = [s.cost_usd for s in sessions.values() if s.project == project]
        if None not in costs:
            shown = all_usage["by_project"].get(project, {"cost_usd": 0.0})["cost_usd"]  # no usage: not listed
            assert shown == pytest.approx(sum(c for c in costs if c is not None), abs=1e-5)


def test_cost_by_model_is_the_price_of_its_tokens(index: tuple[Path, ClaudeIndex]) -> None:
    root, idx = index
    now = time.time()
    sessions = {sid: s for sid in idx.session_ids() if (s := idx.facet(sid, now)) is not None}
    got = compute(sessions, idx, idx.prices, now)["usage"]["all"]["by_model"]
    want: dict[str, float | None] = defaultdict(float)
    for path in root.rglob("*.jsonl"):
        if owner(path, root) not in sessions:
            continue
        for model, _, b in responses(path):
            long = b[0] + b[2] + b[3] + b[4] > 200_000
            usd = idx.prices.cost(model, b, long=long, fast=False)
            prev = want[model]
            want[model] = None if usd is None or prev is None else prev + usd
    assert set(got) == set(want)
    for model, usd in want.items():
        if usd is None:
            assert got[model]["cost_usd"] is None
        else:
            assert got[model]["cost_usd"] == pytest.approx(usd, abs=1e-5), model


def test_counts_by_status_source_and_host(index: tuple[Path, ClaudeIndex]) -> None:
    from .sessions import session

    _, idx = index
    sessions = {
        "a": session("a", status="running", host="box1"),
        "b": session("b", status="waiting"),
        "c": session("c", source="panel", status="idle", host="box1"),
        "d": session("d", source="panel", status="stale", host="box2"),
    }
    got = compute(sessions, idx, idx.prices, time.time())["sessions"]
    import socket

    assert got["total"] == 4
    assert got["by_status"] == {**dict.fromkeys(STATUSES, 0), "running": 1, "waiting": 1, "idle": 1, "stale": 1}
    assert got["by_source"] == {"claude": 2, "panel": 2}
    assert got["by_host"] == {"box1": 2, "box2": 1, socket.gethostname(): 1}


def test_aggregates_stored_without_days_are_read_again(index: tuple[Path, ClaudeIndex]) -> None:
    """A FileAgg stored before the per-quarter-hour usage existed has no day figures: read from 0."""
    _, idx = index
    fs = next(f for f in idx.files.values() if f.agg.slots)
    row = fs.row()
    record = json.loads(row.agg)
    assert record["format"] == 3 and record["agg"]["slots"]
    record["format"] = 2  # as stored before: no slots, responses remembered without their quarter hour
    del record["agg"]["slots"]
    record["agg"]["recent"] = {k: v[:7] for k, v in record["agg"]["recent"].items()}
    old = FileState.from_row(dataclasses.replace(row, agg=json.dumps(record).encode()))
    assert (old.offset, old.agg.lines) == (0, 0)
    assert FileState.from_row(row).offset == fs.offset  # today's rows resume where they were


def _now_line(**fields: Any) -> bytes:
    base = {"sessionId": "today-1", "timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"), "cwd": "/work/stats"}
    base.update(fields)
    return json.dumps(base).encode() + b"\n"


def test_stats_route_on_a_real_server(tmp_path: Path) -> None:
    root = tmp_path / "projects"
    shutil.copytree(FIXTURES, root)
    (root / "-work-stats").mkdir()
    usage = {"input_tokens": 1000, "output_tokens": 200, "cache_read_input_tokens": 3000, "cache_creation_input_tokens": 400}
    (root / "-work-stats" / "today-1.jsonl").write_bytes(
        _now_line(type="user", message={"role": "user", "content": "count"})
        + _now_line(type="assistant", requestId="r1", message={"id": "m1", "model": "claude-sonnet-4-5", "role": "assistant", "content": [{"type": "text", "text": "a"}], "usage": {**usage, "output_tokens": 50}})
        + _now_line(type="assistant", requestId="r1", message={"id": "m1", "model": "claude-sonnet-4-5", "role": "assistant", "content": [{"type": "text", "text": "b"}], "usage": usage})
    )
    env_tz = os.environ.get("TZ")
    srv = Server(root, tmp_path / "sw.db", free_port(), ["--token", "s3cret"], tmp_path / "server.log").start()
    try:
        assert httpx.get(srv.url + "/stats").status_code == 401
        r = httpx.get(srv.url + "/stats", headers={"Authorization": "Bearer s3cret"})
    finally:
        srv.stop()
    assert r.status_code == 200
    body = r.json()
    assert env_tz == os.environ.get("TZ")
    today = body["usage"]["today"]
    assert today["by_project"] == {"/work/stats": {"tokens": {"input": 1000, "output": 200, "cache_creation": 400, "cache_read": 3000}, "cost_usd": today["cost_usd"]}}
    assert list(today["by_model"]) == ["claude-sonnet-4-5"] and today["cost_usd"] > 0
    assert body["sessions"]["by_source"]["claude"] == body["sessions"]["total"] > 1
    assert body["usage"]["all"]["tokens"]["input"] > 1000
