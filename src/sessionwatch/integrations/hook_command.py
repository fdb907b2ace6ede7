"""``sessionwatch hook``: relay one Claude Code hook event from a ``command`` hook to the server.

Claude Code runs it with the event's JSON on stdin (``hooks install`` puts it
where ``http`` hooks do not fire, such as SessionStart). It POSTs the payload
to ``<url>/hooks`` and:

- always exits 0, within 1 s of starting, whatever happens (server down,
  hanging, answering an error): a hook must never slow Claude Code down or
  turn into an error it shows;
- prints nothing, unless the server answered 2xx with a non-empty JSON
  object (a decision for Claude Code): then exactly that JSON on stdout.
  Claude Code adds a SessionStart hook's plain stdout to the conversation,
  so nothing else is ever printed.

URL: ``--url``, else ``$SESSIONWATCH_URL``, else ``http://127.0.0.1:8765``.
Token: the environment variable named by ``--token-env`` (default
``SESSIONWATCH_TOKEN``), sent as ``Authorization: Bearer``.

Only the standard library is imported: this runs once per event, and its
start-up time is Claude Code's to wait.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import BinaryIO, Final, TextIO

DEFAULT_URL: Final = "http://127.0.0.1:8765"
DEFAULT_TOKEN_ENV: Final = "SESSIONWATCH_TOKEN"
#: time from run() to exit, reading stdin included; interpreter start-up (~0.1 s) comes on top
DEADLINE_S: Final = 0.7
#: the server rejects bodies over 1 MiB anyway
MAX_BODY: Final = 1024 * 1024
MAX_ANSWER: Final = 256 * 1024


def _args(argv: Sequence[str]) -> tuple[str | None, str, float]:
    """``[hook] [--server URL] [--token-env NAME] [--timeout S]`` (``--url``: another
    spelling of ``--server``); anything else is ignored (never fail)."""
    url: str | None = None
    token_env = DEFAULT_TOKEN_ENV
    deadline = DEADLINE_S
    items = list(argv)
    if items[:1] == ["hook"]:
        items = items[1:]
    i = 0
    while i < len(items):
        key, _, inline = items[i].partition("=")
        value = inline if inline else (items[i + 1] if i + 1 < len(items) else "")
        step = 1 if inline else 2
        if key in ("--server", "--url"):
            url = value or None
        elif key == "--token-env":
            token_env = value or token_env
        elif key == "--timeout":
            try:
                deadline = min(DEADLINE_S, max(0.05, float(value)))
            except ValueError:
                pass
        else:
            step = 1
        i += step
    return url, token_env, deadline


def _read_stdin(stream: BinaryIO, deadline: float) -> bytes | None:
    """Up to MAX_BODY bytes of stdin, or None if it does not end before ``deadline`` (monotonic)."""
    box: list[bytes] = []

    def read() -> None:
        try:
            box.append(stream.read(MAX_BODY + 1))
        except (OSError, ValueError):
            box.append(b"")

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(max(0.0, deadline - time.monotonic()))
    return box[0] if box else None


def post(url: str, body: bytes, token: str | None, timeout: float) -> tuple[int, bytes]:
    """POST ``body`` to ``url`` + ``/hooks``; (status, answer). Raises OSError / http.client errors."""
    parts = urllib.parse.urlsplit(url.rstrip("/") + "/hooks")
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    conn = conn_cls(parts.hostname, parts.port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json", "User-Agent": "sessionwatch-hook"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn.request("POST", parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read(MAX_ANSWER + 1)
    finally:
        conn.close()


def decision(status: int, answer: bytes) -> str | None:
    """The text to print for an answer: a 2xx non-empty JSON object, exactly as sent; else None."""
    if not 200 <= status < 300 or len(answer) > MAX_ANSWER:
        return None
    text = answer.strip()
    if not text.startswith(b"{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or not value:
        return None
    return text.decode("utf-8")


def run(argv: Sequence[str], stdin: BinaryIO, stdout: TextIO, env: Mapping[str, str]) -> int:
    """The command's whole body; returns the exit status (always 0)."""
    start = time.monotonic()
    try:
        url_arg, token_env, budget = _args(argv)
        deadline = start + budget
        url = url_arg or env.get("SESSIONWATCH_URL") or DEFAULT_URL
        token = env.get(token_env) or None
        body = _read_stdin(stdin, deadline)
        if not body or len(body) > MAX_BODY:
            return 0
        box: list[str | None] = []

        def send() -> None:
            try:
                status, answer = post(url, body, token, max(0.05, deadline - time.monotonic()))
                box.append(decision(status, answer))
            except Exception:  # noqa: BLE001 - a hook relay must never fail Claude Code
                box.append(None)

        worker = threading.Thread(target=send, daemon=True)
        worker.start()
        worker.join(max(0.0, deadline - time.monotonic()))
        if box and box[0] is not None:
            stdout.write(box[0] + "\n")
            stdout.flush()
    except Exception:  # noqa: BLE001 - same: exit 0 and say nothing
        pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``sessionwatch hook [--server URL] [--token-env NAME]``."""
    code = run(sys.argv[1:] if argv is None else argv, sys.stdin.buffer, sys.stdout, os.environ)
    # Exit now, even with a worker thread still blocked on a hanging server.
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
