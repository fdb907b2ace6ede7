"""``sessionwatch mcp``: an MCP server on stdio, a client of a running server.

Claude Code (or any MCP client) starts it (``claude mcp add sessionwatch --
sessionwatch mcp``) and speaks MCP on its stdin and stdout; the tools are in
:mod:`sessionwatch.integrations.mcp_server`. The MCP SDK (the ``[mcp]``
extra) loads inside :func:`run`; without it the command says how to install it.
"""

from __future__ import annotations

import argparse
from typing import Any

from sessionwatch.config import ClientSettings
from sessionwatch.errors import ConfigError


def add_parser(sub: Any) -> None:
    mcp = sub.add_parser(
        "mcp",
        help="MCP server on stdio: Claude Code sees and drives the sessions of a running server",
        description=(
            "Speak MCP on stdin/stdout (run by an MCP client: `claude mcp add sessionwatch -- sessionwatch mcp`). "
            "Its tools list, read, start, message, stop, approve and delete the sessions of a running "
            "`sessionwatch serve`."
        ),
    )
    mcp.set_defaults(run=run)
    mcp.add_argument(
        "--server", "--url", dest="url", metavar="URL", default=None,
        help="the server (default $SESSIONWATCH_URL, else http://127.0.0.1:8765)",
    )  # fmt: skip
    mcp.add_argument("--token", default=None, help="the server's token (default $SESSIONWATCH_TOKEN)")


def run(args: argparse.Namespace) -> int:
    client = ClientSettings.resolve(url=args.url or None, token=args.token or None)
    if not client.url.startswith(("http://", "https://")):
        raise ConfigError(f"--server must be an http:// or https:// URL, not {client.url!r}")
    try:
        from sessionwatch.integrations import mcp_server
    except ImportError as exc:
        raise ConfigError(f"`sessionwatch mcp` needs the MCP SDK: pip install 'sessionwatch[mcp]' ({exc})") from None
    mcp_server.main(client.url, client.token)
    return 0
