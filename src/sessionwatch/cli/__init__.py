"""The ``sessionwatch`` command: the parser, assembled from one module per
subcommand (:mod:`.serve`, :mod:`.scan`, :mod:`.dashboard`, :mod:`.hooks`,
:mod:`.hook`, :mod:`.run`, :mod:`.mcp`, :mod:`.token`, :mod:`.agent`), and dispatch.

A user mistake is one line on stderr and exit status 2, never a traceback.

Only what every command needs is imported here and in the subcommand
modules' top level: `scan` is timed against ccusage with process start-up
included (DESIGN.md "Speed and size"), so the server's modules (uvicorn,
Starlette, prometheus_client, aiosqlite) load inside `serve`'s
``run``, Panel inside `dashboard`'s, the MCP SDK inside `mcp`'s, orjson when JSON is printed (`scan` prints
its JSON with msgspec, already loaded).

``sessionwatch hook`` (the relay Claude Code runs on every hook event) goes
to :mod:`sessionwatch.integrations.hook_command` before anything else is
imported, argparse and the subcommand modules included: only its own
standard-library modules load.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from sessionwatch import __version__

if TYPE_CHECKING:
    import argparse


#: The subcommands, each a module of this package with ``add_parser(sub)``.
COMMANDS = ("serve", "scan", "dashboard", "hooks", "hook", "run", "mcp", "token", "agent")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``only``, the top level and that one
    subcommand (what parsing a command line that names it needs)."""
    import importlib

    from sessionwatch.cli.common import Parser

    parser = Parser(
        prog="sessionwatch",
        description="See every live Claude Code and Panel session as it happens.",
    )
    parser.add_argument("--version", action="version", version=f"sessionwatch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        if only is None or name == only:
            importlib.import_module(f"sessionwatch.cli.{name}").add_parser(sub)
    return parser


def _load_msgspec_alone() -> None:
    """msgspec without typing_extensions, for `scan` (timed with its start-up,
    DESIGN.md "Speed and size"). msgspec takes ``get_type_hints`` and
    ``Required`` from typing_extensions when it is installed, else from
    ``typing``, which has both on Python 3.11; typing_extensions would bring
    inspect, ast and dis, ≈ 12 ms. Hidden only while msgspec loads: a later
    import of typing_extensions finds it as usual."""
    if "msgspec" in sys.modules or "typing_extensions" in sys.modules:
        return
    sys.modules["typing_extensions"] = None  # type: ignore[assignment]  # an import of it raises ImportError
    try:
        import msgspec  # noqa: F401
    finally:
        del sys.modules["typing_extensions"]


def main(argv: Sequence[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else list(argv)
    if args_list[:1] == ["hook"] and not {"-h", "--help"} & set(args_list):
        from sessionwatch.integrations import hook_command

        return hook_command.main(args_list)  # exits the process
    # The cyclic garbage collector stays off while the command's modules load
    # (hundreds of them, none freed: its passes over them were ≈ 20 % of
    # `scan`'s start-up instructions) and, for a one-shot command (`scan`),
    # until it exits; it is on again before any other command runs.
    collecting = gc.isenabled()
    gc.disable()
    if args_list[:1] == ["scan"]:
        _load_msgspec_alone()
    try:
        return _main(argv, args_list, collecting)
    finally:
        if collecting:
            gc.enable()


def _main(argv: Sequence[str] | None, args_list: list[str], collecting: bool) -> int:
    from sessionwatch.errors import SessionwatchError

    # Building every subcommand's parser costs more than `scan` on a small
    # corpus takes to read it: build only the one the line names.
    named = args_list[0] if args_list and args_list[0] in COMMANDS else None
    parser = build_parser(only=named)
    args = parser.parse_args(args_list)
    run: Callable[[argparse.Namespace], int] | None = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 2
    if collecting and not getattr(args, "exit_at_once", False):
        gc.enable()
    try:
        code = run(args)
        if argv is None and getattr(args, "exit_at_once", False):
            # A one-shot command run from the command line whose output is
            # flushed: skip the interpreter's teardown (freeing every object
            # one by one), as `scan` is timed with its exit included.
            sys.stderr.flush()
            os._exit(code)
        return code
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
