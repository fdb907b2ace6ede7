"""``sessionwatch hook``: the relay a ``command`` hook runs (integrations/hook_command.py).

:func:`sessionwatch.cli.main` hands ``sessionwatch hook ...`` to
:func:`sessionwatch.integrations.hook_command.main` before it imports any
other subcommand or even argparse: Claude Code waits for this process on
every event it is installed for, so it must start fast and exit within 1 s
even when the server hangs. This parser exists for ``--help`` (and the
README's flag table, checked against it); the relay itself never fails on
its arguments.
"""

from __future__ import annotations

from typing import Any


def add_parser(sub: Any) -> None:
    hook = sub.add_parser(
        "hook",
        help="relay one Claude Code hook event (stdin) to the server; run by Claude Code",
        description=(
            "Read one hook event's JSON from stdin and POST it to <url>/hooks. Always exits 0 "
            "within 1 s and prints nothing but a decision the server sends. Installed by "
            "`sessionwatch hooks install` for the events Claude Code fires no http hooks for."
        ),
    )
    hook.add_argument("--server", "--url", dest="url", metavar="URL", help="the server (default $SESSIONWATCH_URL, else http://127.0.0.1:8765)")
    hook.add_argument("--token-env", help="environment variable holding the token (default SESSIONWATCH_TOKEN)")
    hook.add_argument("--timeout", help="seconds to wait for the server, at most 0.7 (default 0.7)")
