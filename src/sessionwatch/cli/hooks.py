"""``sessionwatch hooks install|uninstall|status``: sessionwatch's hooks in Claude Code's settings.

A thin command over :mod:`sessionwatch.integrations.claude_settings`, which
does the merging, the backup and the byte-for-byte uninstall. Prints one line
on success; a settings file it cannot use or a bad flag is one stderr line and
exit status 2 (the file is left as it was). ``status`` lists what is installed
per event and form, the user's own hooks it leaves alone, and whether the
server answers ``GET /healthz``.

Only the standard library loads here (``urllib`` inside ``status``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any, Final

from sessionwatch.cli import common
from sessionwatch.config import DEFAULT_SERVER_URL, ClientSettings

DEFAULT_URL: Final = DEFAULT_SERVER_URL
DEFAULT_SCOPE: Final = "user"
#: the server's --approval-wait-s default (DESIGN.md, serve flags)
DEFAULT_APPROVAL_WAIT_S: Final = 600.0
#: ``status`` gives the server this long to answer /healthz
HEALTH_TIMEOUT_S: Final = 2.0


def add_parser(sub: Any) -> None:
    hooks = sub.add_parser(
        "hooks",
        help="install, remove or show sessionwatch's hooks in Claude Code's settings",
        description=(
            "install: merge sessionwatch's hooks into Claude Code's settings (idempotent; every hook "
            "already there stays; the previous file is kept as <file>.sessionwatch.bak). uninstall: "
            "remove exactly what install added. status: what is installed and whether the server answers."
        ),
    )
    hooks.set_defaults(run=run)
    hooks.add_argument("action", choices=("install", "uninstall", "status"), help="what to do")
    hooks.add_argument(
        "--scope",
        choices=("user", "project", "local"),
        default=None,
        help="user: ~/.claude/settings.json; project: <project>/.claude/settings.json; "
        "local: <project>/.claude/settings.local.json (default user)",
    )
    hooks.add_argument("--project", type=Path, help="the project of --scope project/local (the current directory when not given)")
    hooks.add_argument(
        "--server", "--url", dest="url", metavar="URL",
        help="the server the hooks post to (default $SESSIONWATCH_URL, else http://127.0.0.1:8765)",
    )
    hooks.add_argument(
        "--token-env",
        metavar="VAR",
        help="environment variable holding the server's token in Claude Code's environment; "
        "the hooks send it, the settings file never holds the token (default none)",
    )
    hooks.add_argument(
        "--approval-wait-s",
        type=common.positive_float,
        help="the server's --approval-wait-s: the PermissionRequest hook waits that long plus 10 s (default 600)",
    )
    hooks.add_argument(
        "--hook-command",
        help="how Claude Code runs sessionwatch for command hooks (when not given: `sessionwatch` if it "
        "is on PATH, else this Python with -m sessionwatch)",
    )


def _url(args: argparse.Namespace) -> str:
    return ClientSettings.resolve(url=args.url).url


def _path(args: argparse.Namespace) -> Path:
    from sessionwatch.integrations.claude_settings import settings_path

    project = args.project.expanduser() if args.project else None
    return settings_path(args.scope or DEFAULT_SCOPE, project=project)


def hook_command(flag: str | None) -> tuple[str, ...]:
    """The command line that runs this sessionwatch: ``--hook-command``, else
    ``sessionwatch`` if that is on PATH, else this interpreter with ``-m``."""
    import shlex

    if flag:
        return tuple(shlex.split(flag))
    if shutil.which("sessionwatch"):
        return ("sessionwatch",)
    return (sys.executable, "-m", "sessionwatch")


def run(args: argparse.Namespace) -> int:
    from sessionwatch.integrations import claude_settings as cs

    path = _path(args)
    if args.action == "install":
        plan = cs.HookPlan(
            url=_url(args),
            token_env=args.token_env,
            hook_command=hook_command(args.hook_command),
            approval_wait_s=args.approval_wait_s if args.approval_wait_s is not None else DEFAULT_APPROVAL_WAIT_S,
        )
        change = cs.install(path, plan)
        if change.changed:
            backup = f" (previous file: {change.backup})" if change.backup else ""
            print(f"installed sessionwatch's hooks for {len(plan.events)} events in {path}, posting to {plan.hooks_url}{backup}")
        else:
            print(f"sessionwatch's hooks are already installed in {path}; nothing changed")
        return 0
    if args.action == "uninstall":
        change = cs.uninstall(path)
        if change.changed:
            print(f"removed {change.removed} sessionwatch hooks from {path}; every other hook is as it was")
        else:
            print(f"no sessionwatch hooks in {path}; nothing changed")
        return 0
    return _status(cs.status(path), args)


def _status(st: Any, args: argparse.Namespace) -> int:
    if not st.exists:
        print(f"{st.path}: no such file; no hooks installed")
    elif not st.ours:
        print(f"{st.path}: no sessionwatch hooks installed")
    else:
        print(f"{st.path}: sessionwatch hooks for {len({i.event for i in st.ours})} events")
        for item in st.ours:
            token = f"  (token from ${item.token_env})" if item.token_env else ""
            print(f"  {item.event:20} {item.form:8} {item.target}{token}")
    if st.ours and st.missing:
        print(f"  not installed: {', '.join(st.missing)} (run `sessionwatch hooks install` again)")
    if st.others:
        others = ", ".join(f"{event} {n}" for event, n in sorted(st.others.items()))
        print(f"  other hooks, left alone: {others}")
    url = args.url or _installed_url(st) or _url(args)
    ok, why = check_server(url)
    print(f"server {url}: {'answers' if ok else 'does not answer'} ({why})")
    return 0


def _installed_url(st: Any) -> str | None:
    for item in st.ours:
        if item.form == "http" and item.target.endswith("/hooks"):
            return str(item.target[: -len("/hooks")])
    return None


def check_server(url: str, timeout: float = HEALTH_TIMEOUT_S) -> tuple[bool, str]:
    """``GET <url>/healthz`` within ``timeout``: (answered ok, what happened in a few words)."""
    import urllib.error
    import urllib.request

    # no proxy, as the relay (http.client) and a server on this machine need none
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url.rstrip("/") + "/healthz", timeout=timeout) as resp:
            return resp.status == 200, f"GET /healthz: {resp.status}"
    except urllib.error.HTTPError as exc:
        return False, f"GET /healthz: {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"GET /healthz: {reason}"
