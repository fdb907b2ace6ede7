"""The ``sessionwatch`` command: the parser, assembled from one module per
subcommand (:mod:`.serve`, :mod:`.scan`, :mod:`.dashboard`), and dispatch.

A user mistake is one line on stderr and exit status 2, never a traceback.

Only what every command needs is imported here and in the subcommand
modules' top level: `scan` is timed against ccusage with process start-up
included (DESIGN.md "Speed and size"), so the server's modules (uvicorn,
Starlette, prometheus_client, aiosqlite) load inside `serve`'s
``run``, Panel inside `dashboard`'s, orjson when JSON is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from sessionwatch import __version__
from sessionwatch.cli import dashboard, scan, serve
from sessionwatch.cli.common import Parser
from sessionwatch.errors import SessionwatchError


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="sessionwatch",
        description="See every live Claude Code and Panel session as it happens.",
    )
    parser.add_argument("--version", action="version", version=f"sessionwatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in (serve, scan, dashboard):
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] | None = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 2
    try:
        return run(args)
    except SessionwatchError as exc:
        print(f"sessionwatch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`sessionwatch scan --json | head`): stop
        # quietly, with the status of a program ended by SIGPIPE (128 + 13),
        # and point stdout at /dev/null so the exit's flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
