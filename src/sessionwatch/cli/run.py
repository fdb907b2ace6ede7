"""``sessionwatch run [flags] -- <claude args>``: Claude Code headless in the
foreground, its progress here and on the dashboards (:mod:`sessionwatch.run`).

Progress goes to stderr (a TTY gets one live status line, a pipe plain
lines); the answer of each turn goes to stdout, so ``sessionwatch run -- -p
"..." > out.txt`` keeps it. Exits with Claude Code's exit status (130 after
Ctrl-C or Stop on the dashboard, 3 past ``--max-cost-usd``); a bad flag or no
CLI to run is one stderr line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sessionwatch.cli import common
from sessionwatch.config import ClientSettings


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run Claude Code headless, its progress here and on the dashboards",
        description=(
            "Run `claude -p --output-format stream-json --verbose <claude args>` in the foreground: turns, tools "
            "and cost so far on stderr, the answer on stdout, the session live on the server's dashboards. "
            "Ctrl-C interrupts Claude Code (a second one terminates it). Exits with Claude Code's exit status."
        ),
        usage="sessionwatch run [flags] -- <claude args>",
    )
    p.set_defaults(run=run)
    p.add_argument("--server", metavar="URL", help="the server to report to (default $SESSIONWATCH_URL, else http://127.0.0.1:8765)")
    p.add_argument("--token", help="the server's token (default $SESSIONWATCH_TOKEN)")
    p.add_argument("--no-server", action="store_true", help="report to no server; only print")
    p.add_argument("--name", help="the run's name on the dashboards")
    p.add_argument(
        "--max-cost-usd", type=common.positive_float, metavar="X",
        help="interrupt Claude Code once the cost so far passes X dollars (exit status 3)",
    )
    p.add_argument("--claude-bin", metavar="PATH", help="the Claude Code CLI (default `claude` on PATH, else the one claude-agent-sdk bundles)")
    p.add_argument("claude_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from sessionwatch.errors import ConfigError
    from sessionwatch.run import Progress, run_claude

    claude_args = list(args.claude_args)
    if claude_args[:1] == ["--"]:
        claude_args = claude_args[1:]
    if not claude_args:
        raise ConfigError('nothing to run: give Claude Code\'s arguments after --, as in sessionwatch run -- -p "hello"')
    client = ClientSettings.resolve(url=args.server, token=args.token)
    result = run_claude(
        claude_args,
        server=None if args.no_server else client.url,
        token=client.token,
        name=args.name,
        max_cost_usd=args.max_cost_usd,
        claude_bin=args.claude_bin,
        progress=Progress(sys.stderr, sys.stdout),
    )
    return result.exit_code
