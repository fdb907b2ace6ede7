"""``GET /stats``: the dashboards' totals (DESIGN.md, HTTP).

Counts of the sessions the hub holds by status, source and host (a session
without a host is this server's, counted under its host name), and the
Claude sessions' tokens and cost for today, the last 7 days (today and the
six local days before it) and all time, each by model and by project::

    {"timestamp": 1.8e9, "today": "2026-11-22",
     "sessions": {"total": 3, "by_status": {"running": 1, ...}, "by_source": {...}, "by_host": {...}},
     "usage": {"today": U, "last_7_days": U, "all": U},
     "unpriced_models": ["..."]}

    U = {"tokens": {"input", "output", "cache_creation", "cache_read"}, "cost_usd": float,
         "by_model": {model: {"tokens": {...}, "cost_usd": float | null}},
         "by_project": {project: {"tokens": {...}, "cost_usd": float}}}

Days are the server's local days. All-time figures come from each file's
usage buckets (the same the sessions' ``tokens`` and ``cost_usd`` add up);
the days from the same usage kept per UTC quarter hour
(``FileAgg.slots``, transcript.py): every zone's offset is a whole number of
quarter hours, so a quarter hour lies in one local day. A response's usage
counts in the quarter hour of its first line. ``cost_usd`` adds up what has a
price; a model without one shows ``null`` in ``by_model`` and is listed in
``unpriced_models`` (its tokens are counted).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sessionwatch.model import SOURCES, STATUSES, Session
from sessionwatch.sources.claude.transcript import SLOT_S

if TYPE_CHECKING:
    from sessionwatch.prices import PriceTable
    from sessionwatch.sources.claude.index import ClaudeIndex

PERIODS = ("today", "last_7_days", "all")
Sums = dict[tuple[str, str], list[int]]  # (bucket key "<model>|<long>|<fast>", project) → 5 ints


def _add(sums: Sums, key: tuple[str, str], bucket: list[int]) -> None:
    total = sums.get(key)
    if total is None:
        sums[key] = list(bucket[:5])
    else:
        for i in range(5):
            total[i] += bucket[i]


def _tokens(b: list[int]) -> dict[str, int]:
    return {"input": b[0], "output": b[1], "cache_creation": b[2] + b[3], "cache_read": b[4]}


def _usage(sums: Sums, prices: PriceTable, unpriced: set[str]) -> dict[str, Any]:
    total = [0, 0, 0, 0, 0]
    cost = 0.0
    models: dict[str, tuple[list[int], float | None]] = {}
    projects: dict[str, tuple[list[int], float]] = {}
    for (bucket_key, project), b in sorted(sums.items()):
        model, long, fast = bucket_key.rsplit("|", 2)
        usd = prices.cost(model, b, long=long == "1", fast=fast == "1")
        if usd is None:
            unpriced.add(model)
        for i in range(5):
            total[i] += b[i]
        cost += usd or 0.0
        mb, mc = models.get(model, ([0, 0, 0, 0, 0], 0.0))
        models[model] = ([x + y for x, y in zip(mb, b, strict=True)], None if usd is None or mc is None else mc + usd)
        pb, pc = projects.get(project, ([0, 0, 0, 0, 0], 0.0))
        projects[project] = ([x + y for x, y in zip(pb, b, strict=True)], pc + (usd or 0.0))
    return {
        "tokens": _tokens(total),
        "cost_usd": round(cost, 6),
        "by_model": {
            m: {"tokens": _tokens(b), "cost_usd": None if c is None else round(c, 6)} for m, (b, c) in models.items()
        },
        "by_project": {p: {"tokens": _tokens(b), "cost_usd": round(c, 6)} for p, (b, c) in projects.items()},
    }


def compute(sessions: Mapping[str, Session], index: ClaudeIndex, prices: PriceTable, now: float) -> dict[str, Any]:
    """The ``/stats`` body for ``sessions`` (the hub's) and ``index`` at ``now``."""
    by_status = dict.fromkeys(STATUSES, 0)
    by_source = dict.fromkeys(SOURCES, 0)
    by_host: dict[str, int] = {}
    here = socket.gethostname()
    for row in sessions.values():
        by_status[row.status] = by_status.get(row.status, 0) + 1
        by_source[row.source] = by_source.get(row.source, 0) + 1
        host = row.host or here
        by_host[host] = by_host.get(host, 0) + 1

    today = date.fromtimestamp(now)
    week_start = today - timedelta(days=6)
    sums: dict[str, Sums] = {p: {} for p in PERIODS}
    days: dict[int, date] = {}
    for sid in index.session_ids():
        s = sessions.get(sid)
        if s is not None and s.source != "claude":
            continue  # hidden behind another source's row: not shown, not counted
        files = index.files_of(sid)
        if s is not None:
            project = s.project
        else:
            facet = index.facet(sid, now)
            project = facet.project if facet is not None else ""
        for fs in files:
            agg = fs.agg
            for bucket_key, bucket in agg.buckets.items():
                _add(sums["all"], (bucket_key, project), bucket)
            for slot_key, bucket in agg.slots.items():
                slot_text, bucket_key = slot_key.split("|", 1)
                slot = int(slot_text)
                day = days.get(slot)
                if day is None:
                    day = days[slot] = datetime.fromtimestamp(slot * SLOT_S).date()
                if week_start <= day <= today:
                    _add(sums["last_7_days"], (bucket_key, project), bucket)
                    if day == today:
                        _add(sums["today"], (bucket_key, project), bucket)
    unpriced: set[str] = set()
    usage = {p: _usage(sums[p], prices, unpriced) for p in PERIODS}
    return {
        "timestamp": now,
        "today": today.isoformat(),
        "sessions": {"total": len(sessions), "by_status": by_status, "by_source": by_source, "by_host": by_host},
        "usage": usage,
        "unpriced_models": sorted(unpriced),
    }
