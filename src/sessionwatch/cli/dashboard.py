"""``sessionwatch dashboard``: the Panel dashboard, a client of a running server.

Panel loads inside :func:`run`; without it the command says how to install it.
"""

from __future__ import annotations

import argparse
from typing import Any

from sessionwatch.config import ClientSettings
from sessionwatch.cli import common
from sessionwatch.errors import ConfigError



def add_parser(sub: Any) -> None:
    dash = sub.add_parser(
        "dashboard",
        help="serve the Panel dashboard for a running monitor",
        description="Serve the Panel dashboard, a client of a running `sessionwatch serve`.",
    )
    dash.set_defaults(run=run)
    dash.add_argument("--server", "--server-url", dest="server_url", metavar="URL", default=None, help="monitor URL (default $SESSIONWATCH_URL, else http://127.0.0.1:8765)")
    dash.add_argument("--port", type=common.port, default=5007, help="dashboard port (default 5007)")
    dash.add_argument("--token", default=None, help="the monitor's token (default $SESSIONWATCH_TOKEN)")


def run(args: argparse.Namespace) -> int:
    try:
        from sessionwatch.integrations.panel import dashboard as dash
    except ImportError as exc:
        raise ConfigError(f"the Panel dashboard needs Panel: pip install 'sessionwatch[panel]' ({exc})") from None
    client = ClientSettings.resolve(url=args.server_url or None, token=args.token or None)
    dash.main(client.url, args.port, client.token)
    return 0


