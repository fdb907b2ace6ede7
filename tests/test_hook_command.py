"""``sessionwatch hook`` (integrations/hook_command.py) against a tiny real HTTP server.

The command runs as its own process (``python -m sessionwatch.integrations.hook_command``)
with the payload on stdin, as Claude Code runs a command hook. The 1 s bound
is checked without timing assertions: the server holds the request open until
the test has seen the command exit, so an exit proves it stopped waiting.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sessionwatch.integrations import hook_command
from sessionwatch.integrations.hook_command import decision, run

from .conftest import free_port

VECTORS = Path(__file__).parent / "vectors" / "hooks"
PAYLOAD = json.dumps(
    next(c["payload"] for c in json.loads((VECTORS / "interactive.json").read_text())["calls"] if c["event"] == "SessionStart")
).encode()
DECISION = b'{"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": {"behavior": "deny", "message": "no"}}}'


@dataclass
class Receiver:
    """Records POSTs; answers with ``status`` and ``answer``, or holds the request while ``hold`` is unset."""

    status: int = 200
    answer: bytes = b""
    hold: threading.Event | None = None
    got: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            rec.got.append((self.path, dict(self.headers), body))
            rec.arrived.set()
            if rec.hold is not None:
                rec.hold.wait(30)
            self.send_response(rec.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(rec.answer)))
            self.end_headers()
            self.wfile.write(rec.answer)

    rec.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.server.daemon_threads = True
    threading.Thread(target=rec.server.serve_forever, daemon=True).start()
    try:
        yield rec
    finally:
        if rec.hold is not None:
            rec.hold.set()
        rec.server.shutdown()
        rec.server.server_close()


def relay(*args: str, stdin: bytes = PAYLOAD, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run the command as Claude Code would (its own process, payload on stdin)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "sessionwatch.integrations.hook_command", "hook", *args],
        input=stdin,
        capture_output=True,
        env={**base, **(env or {})},
        timeout=30,
    )


def test_posts_the_payload_with_the_token_and_prints_nothing(receiver: Receiver) -> None:
    receiver.answer = b"{}"
    proc = relay("--url", receiver.url, "--token-env", "SW_TOKEN_FOR_TEST", env={"SW_TOKEN_FOR_TEST": "t0k3n-abc"})
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")
    [(path, headers, body)] = receiver.got
    assert path == "/hooks" and body == PAYLOAD
    assert headers["Authorization"] == "Bearer t0k3n-abc" and headers["Content-Type"] == "application/json"


def test_url_and_token_from_the_environment(receiver: Receiver) -> None:
    proc = relay(env={"SESSIONWATCH_URL": receiver.url + "/", "SESSIONWATCH_TOKEN": "from-env"})
    assert proc.returncode == 0 and proc.stdout == b""
    assert receiver.got[0][0] == "/hooks" and receiver.got[0][1]["Authorization"] == "Bearer from-env"


def test_no_token_sends_no_authorization(receiver: Receiver) -> None:
    relay("--url", receiver.url)
    assert "Authorization" not in receiver.got[0][1]


def test_a_decision_is_relayed_exactly(receiver: Receiver) -> None:
    receiver.answer = DECISION
    proc = relay("--url", receiver.url)
    assert proc.returncode == 0 and proc.stdout == DECISION + b"\n"


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (200, b""),
        (200, b"{}"),  # no decision
        (200, b"added context"),  # Claude Code would add plain text to the conversation
        (200, b"[1, 2]"),
        (200, b"{broken"),
        (500, DECISION),  # an error page is never taken for a decision
        (401, b'{"error": "sign in"}'),
        (404, b'{"error": "not found"}'),
    ],
)
def test_anything_but_a_decision_prints_nothing(receiver: Receiver, status: int, answer: bytes) -> None:
    receiver.status, receiver.answer = status, answer
    proc = relay("--url", receiver.url)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")
    assert len(receiver.got) == 1


def test_server_down_exits_zero_silently() -> None:
    proc = relay("--url", f"http://127.0.0.1:{free_port()}")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")


def test_hanging_server_does_not_hold_the_hook(receiver: Receiver) -> None:
    receiver.hold = threading.Event()  # the server answers only after the command has exited
    receiver.answer = DECISION
    proc = relay("--url", receiver.url)
    assert receiver.arrived.is_set() and not receiver.hold.is_set()
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")


@pytest.mark.parametrize("args", [["--url", "not a url"], ["--url", "ftp://127.0.0.1:1"], ["--timeout", "x", "--bogus"], ["--url"]])
def test_bad_arguments_exit_zero_silently(args: list[str]) -> None:
    proc = relay(*args, env={"SESSIONWATCH_URL": f"http://127.0.0.1:{free_port()}"})
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")


def test_empty_stdin_posts_nothing(receiver: Receiver) -> None:
    proc = relay("--url", receiver.url, stdin=b"")
    assert proc.returncode == 0 and receiver.got == []


def test_stdin_that_never_ends_does_not_hold_the_hook(receiver: Receiver) -> None:
    read_end, write_end = os.pipe()
    stream = os.fdopen(read_end, "rb", buffering=0)  # unbuffered: no lock held by the blocked reader
    try:
        out = io.StringIO()
        assert run(["--url", receiver.url, "--timeout", "0.3"], stream, out, {}) == 0  # returns, the pipe still open
        assert out.getvalue() == "" and receiver.got == []
    finally:
        os.close(write_end)  # the reader thread sees EOF and ends; its file is collected with it


def test_in_process_run_returns_before_a_hanging_server_answers(receiver: Receiver) -> None:
    receiver.hold = threading.Event()
    receiver.answer = DECISION
    out = io.StringIO()
    assert run(["--url", receiver.url, "--timeout", "0.3"], io.BytesIO(PAYLOAD), out, {}) == 0
    assert receiver.arrived.is_set() and not receiver.hold.is_set() and out.getvalue() == ""


def test_oversized_payload_is_not_sent(receiver: Receiver) -> None:
    out = io.StringIO()
    run(["--url", receiver.url], io.BytesIO(b"x" * (hook_command.MAX_BODY + 1)), out, {})
    assert receiver.got == []


@pytest.mark.parametrize(
    ("status", "answer", "printed"),
    [(200, DECISION, DECISION.decode()), (204, b"", None), (200, b'  {"continue": true}\n', '{"continue": true}'), (299, b"{}", None)],
)
def test_decision_rule(status: int, answer: bytes, printed: str | None) -> None:
    assert decision(status, answer) == printed
