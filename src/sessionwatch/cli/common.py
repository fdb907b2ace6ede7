"""What every subcommand shares: the parser class, argument types, the
Claude options and the settings they resolve to.

Imported by ``sessionwatch scan``, so it stays light: nothing here loads the
server (DESIGN.md "Speed and size": scan is timed with start-up included).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from sessionwatch.config import Settings


class Parser(argparse.ArgumentParser):
    """A user mistake is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse builds a formatter for every add_argument (to check the
        # metavar); without a width it imports shutil for the terminal's, and
        # shutil imports zlib, bz2 and lzma: ≈ 5 ms of `scan`'s start-up
        return self.formatter_class(prog=self.prog, width=terminal_columns() - 2)  # type: ignore[call-arg]


def terminal_columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size()`` gives it
    (``$COLUMNS``, else standard output's terminal, else 80), without shutil."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def add_claude_options(p: argparse.ArgumentParser) -> None:
    """The options of reading transcripts, shared by ``serve`` and ``scan``."""
    p.add_argument("--projects-dir", type=Path, help="Claude Code transcripts (default ~/.claude/projects)")
    p.add_argument("--idle-after-s", type=positive_float, help="Claude session idle once its newest entry is this old (default 300)")
    p.add_argument("--prices", type=Path, help="JSON price table replacing the embedded one and genai-prices' bundled data")


def settings(args: argparse.Namespace, *, db: Path | None = None) -> Settings:
    """Settings from the flags ``args`` has (flag > ``SESSIONWATCH_*`` > default)."""
    chosen: Path | str | None = db
    if getattr(args, "db", None):
        chosen = args.db  # a Path or a postgresql:// URL (config.database_arg)
    return Settings.resolve(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        projects_dir=args.projects_dir.expanduser() if args.projects_dir else None,
        claude_dir=args.claude_dir.expanduser() if getattr(args, "claude_dir", None) else None,
        db=chosen,
        token=getattr(args, "token", None),
        allowed_hosts=getattr(args, "allowed_hosts", None),
        trusted_proxies=getattr(args, "trusted_proxies", None),
        debounce_ms=getattr(args, "debounce_ms", None),
        keepalive_s=getattr(args, "keepalive_s", None),
        stale_after_s=getattr(args, "stale_after_s", None),
        agent_stale_after_s=getattr(args, "agent_stale_after_s", None),
        cleanup_after_s=getattr(args, "cleanup_after_s", None),
        idle_after_s=args.idle_after_s,
        prices=args.prices.expanduser() if args.prices else None,
        approval_wait_s=getattr(args, "approval_wait_s", None),
        max_cost_usd=getattr(args, "max_cost_usd", None),
        max_daily_cost_usd=getattr(args, "max_daily_cost_usd", None),
        webhooks=getattr(args, "webhook", None),
        max_managed=getattr(args, "max_managed", None),
        default_max_cost_usd=getattr(args, "default_max_cost_usd", None),
        log_retention_days=getattr(args, "log_retention_days", None),
        claude_bin=getattr(args, "claude_bin", None),
        workspace_root=args.workspace_root.expanduser() if getattr(args, "workspace_root", None) else None,
        allow_bypass_permissions=getattr(args, "allow_bypass_permissions", None),
    )
