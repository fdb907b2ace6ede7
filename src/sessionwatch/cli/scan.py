"""``sessionwatch scan``: every Claude session once, without a server.

Timed against ccusage with process start-up included (DESIGN.md "Speed and
size"), so this module imports nothing heavy at the top: no starlette,
uvicorn, aiosqlite or panel ever, nor orjson (msgspec, which reads the
transcripts, also writes the JSON); the index and prices load inside
:func:`run`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sessionwatch.cli import common
from sessionwatch.errors import ConfigError

if TYPE_CHECKING:
    from sessionwatch.model import Session


def add_parser(sub: Any) -> None:
    scan = sub.add_parser(
        "scan",
        help="print Claude Code sessions once, without a server",
        description="Read every transcript once and print its sessions (no server, no database).",
    )
    scan.set_defaults(run=run, exit_at_once=True)
    common.add_claude_options(scan)
    scan.add_argument("--json", action="store_true", help="print JSON ({\"sessions\": [...], \"totals\": {...}})")


def run(args: argparse.Namespace) -> int:
    from sessionwatch.sources.claude.index import ClaudeIndex
    from sessionwatch.metrics import Tally
    from sessionwatch.prices import PriceTable

    # scan opens no database: no need to find the user data dir
    settings = common.settings(args, db=Path(os.devnull))
    if not settings.projects_dir.is_dir():
        raise ConfigError(f"--projects-dir {settings.projects_dir} does not exist")
    prices = PriceTable.from_file(settings.prices) if settings.prices else PriceTable.embedded()
    progress = _progress if sys.stderr.isatty() else None
    index = ClaudeIndex(
        settings.projects_dir, prices, idle_after_s=settings.idle_after_s, progress=progress, metrics=Tally()
    )
    index.settle_s = 0.0  # a one-shot read: an unterminated last line is final
    started = time.perf_counter()
    index.scan()
    now = time.time()
    # every id with a transcript; facet() is None for one that is no session
    # yet (session_ids() would find each session's files once more)
    sessions = [s for sid in index.members if (s := index.facet(sid, now)) is not None]
    # newest first; the id breaks ties, so the order is the same whichever reader read what
    sessions.sort(key=lambda s: (s.last_activity or "", s.id), reverse=True)
    if progress is not None:
        print(f"\r{len(sessions)} sessions in {time.perf_counter() - started:.2f} s" + " " * 20, file=sys.stderr)
    if args.json:
        # msgspec (loaded already, for the transcripts), not orjson: its import
        # is a few per cent of the start-up, for one dump
        import msgspec

        # the Session structs themselves: the same JSON as model.to_dict's
        body = msgspec.json.encode({"sessions": sessions, "totals": _totals(sessions)})
        sys.stdout.buffer.write(msgspec.json.format(body, indent=2))
        sys.stdout.buffer.write(b"\n")
    else:
        _print_table(sessions)
    sys.stdout.flush()  # a closed pipe fails here, inside main()'s handler, not at exit
    return 0


def _progress(done: int, total: int) -> None:
    print(f"\rreading transcripts: {done}/{total}", end="", file=sys.stderr, flush=True)


def _totals(sessions: list[Session]) -> dict[str, Any]:
    tokens = {"input": 0, "output": 0, "cache_creation": 0, "cache_read": 0}
    cost = 0.0
    unpriced = 0
    for s in sessions:
        t = s.tokens
        tokens["input"] += t.input
        tokens["output"] += t.output
        tokens["cache_creation"] += t.cache_creation
        tokens["cache_read"] += t.cache_read
        if s.cost_usd is None:
            unpriced += 1
        else:
            cost += s.cost_usd
    return {"sessions": len(sessions), "tokens": tokens, "cost_usd": round(cost, 6), "unpriced_sessions": unpriced}


def _print_table(sessions: list[Session]) -> None:
    header = f"{'STATUS':8} {'LAST ACTIVITY':20} {'TOKENS':>12} {'COST':>9}  PROJECT / TITLE"
    print(header)
    for s in sessions:
        t = s.tokens
        total = t.input + t.output + t.cache_creation + t.cache_read
        cost = "-" if s.cost_usd is None else f"${s.cost_usd:.2f}"
        last = (s.last_activity or "")[:19].replace("T", " ")
        print(f"{s.status:8} {last:20} {total:>12,} {cost:>9}  {s.project}  {s.title or ''}"[:200])
