"""A scripted fake of the Anthropic Messages API, for running the real Claude Code CLI offline.

A real HTTP server on 127.0.0.1 and a free port (stdlib ``ThreadingHTTPServer``
in a daemon thread). ``POST /v1/messages`` answers with Server-Sent Events
shaped as the Messages API streams them; ``HEAD /`` answers 200 (Claude Code
2.1.197 probes it first). Every request is recorded.

Scripting: the Nth *agent-loop* request (one whose body has a non-empty
``tools`` list) gets ``script[N]``: a :class:`Turn` (text, tool_use and
thinking blocks with the usage the test chose) or an :class:`ApiError`.
A *side query* (no tools: the CLI asking for a title, a summary, ...) gets a
short text answer with :data:`SIDE_USAGE`, or ``side_script`` entries in order
when given. A request beyond the script is answered 400 and recorded in
``unexpected``; :meth:`FakeAPI.check` fails the test on any.

Usage::

    with FakeAPI([Turn.text("hello", usage=Usage(1200, 300))]) as api:
        run the CLI with ANTHROPIC_BASE_URL=api.url
        api.agent_requests()[0].body["messages"]
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal


@dataclass(frozen=True)
class Usage:
    """Token usage of one response; ``cache_creation`` is split into 5-minute and 1-hour writes."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    #: of ``cache_creation_input_tokens``, how many are 1-hour writes (the rest are 5-minute)
    cache_1h_input_tokens: int = 0

    def start_json(self) -> dict[str, Any]:
        """The usage ``message_start`` carries: input side final, output still tiny."""
        return {**self.final_json(), "output_tokens": min(1, self.output_tokens)}

    def final_json(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_creation_input_tokens - self.cache_1h_input_tokens,
                "ephemeral_1h_input_tokens": self.cache_1h_input_tokens,
            },
            "output_tokens": self.output_tokens,
            "service_tier": "standard",
        }

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
            self.cache_1h_input_tokens + other.cache_1h_input_tokens,
        )


#: What an unscripted side query (no tools) costs: small, fixed, accounted for by tests.
SIDE_USAGE = Usage(input_tokens=20, output_tokens=5)


@dataclass(frozen=True)
class Block:
    type: Literal["text", "tool_use", "thinking"]
    text: str = ""
    name: str = ""
    input: dict[str, Any] = field(default_factory=dict)
    id: str = ""


@dataclass(frozen=True)
class Turn:
    """One scripted response. ``stop_reason`` defaults to ``tool_use`` if a block uses a tool."""

    blocks: Sequence[Block]
    usage: Usage = Usage(10, 5)
    stop_reason: str | None = None
    #: the response's model; default: the model the request asked for
    model: str | None = None
    #: if set, the response waits (up to ``gate_timeout``) until the test sets it
    gate: threading.Event | None = None
    gate_timeout: float = 30.0

    @classmethod
    def text(cls, text: str, usage: Usage = Usage(10, 5), **kw: Any) -> Turn:
        return cls([Block("text", text=text)], usage, **kw)

    @classmethod
    def tool_use(
        cls, name: str, input: dict[str, Any], usage: Usage = Usage(10, 5), *, text: str = "", **kw: Any
    ) -> Turn:
        blocks = [Block("text", text=text)] if text else []
        blocks.append(Block("tool_use", name=name, input=input, id=f"toolu_{uuid.uuid4().hex[:24]}"))
        return cls(blocks, usage, **kw)


@dataclass(frozen=True)
class ApiError:
    """A scripted failure, e.g. ``ApiError(529, "overloaded_error", "Overloaded")``."""

    status: int
    type: str = "api_error"
    message: str = "scripted failure"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    #: "agent" (tools present), "side" (no tools) or "other"
    kind: str
    #: 0-based position among requests of the same kind
    index: int
    status: int = 0
    message_id: str | None = None
    request_id: str | None = None
    usage: Usage | None = None

    @property
    def tools(self) -> list[str]:
        tools = self.body.get("tools") if isinstance(self.body, dict) else None
        return [t.get("name", "") for t in tools or [] if isinstance(t, dict)]

    def tool_results(self) -> list[dict[str, Any]]:
        """Every ``tool_result`` block in the request's messages (what the CLI sent back)."""
        found: list[dict[str, Any]] = []
        for msg in self.body.get("messages", []) if isinstance(self.body, dict) else []:
            content = msg.get("content")
            if isinstance(content, list):
                found.extend(b for b in content if isinstance(b, dict) and b.get("type") == "tool_result")
        return found


class FakeAPI:
    """The fake server. Start with ``with FakeAPI(script) as api`` or :meth:`start` / :meth:`stop`."""

    def __init__(
        self,
        script: Iterable[Turn | ApiError] = (),
        *,
        side_script: Iterable[Turn | ApiError] = (),
        side_usage: Usage = SIDE_USAGE,
    ) -> None:
        self.script: list[Turn | ApiError] = list(script)
        self.side_script: list[Turn | ApiError] = list(side_script)
        self.side_usage = side_usage
        self.requests: list[Recorded] = []
        self.unexpected: list[str] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> FakeAPI:
        handler = type("Handler", (_Handler,), {"api": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fakeapi", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "FakeAPI not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- scripting and inspection ------------------------------------------------

    def add(self, *turns: Turn | ApiError) -> None:
        """Append agent-loop turns (for a later prompt of the same run)."""
        with self._lock:
            self.script.extend(turns)

    def reset(self, script: Iterable[Turn | ApiError] = (), side_script: Iterable[Turn | ApiError] = ()) -> None:
        """Forget recorded requests and start a new script (one fake shared by several runs)."""
        with self._lock:
            self.script = list(script)
            self.side_script = list(side_script)
            self.requests.clear()
            self.unexpected.clear()

    def of_kind(self, kind: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.kind == kind]

    def agent_requests(self) -> list[Recorded]:
        return self.of_kind("agent")

    def side_requests(self) -> list[Recorded]:
        return self.of_kind("side")

    def answered_usage(self) -> Usage:
        """The sum of every usage this fake answered with (agent and side)."""
        total = Usage()
        with self._lock:
            for r in self.requests:
                if r.usage is not None:
                    total = total + r.usage
        return total

    def wait_requests(self, count: int, kind: str = "agent", timeout: float = 30.0) -> list[Recorded]:
        """Block until ``count`` requests of ``kind`` arrived, or fail at the deadline."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [r for r in self.requests if r.kind == kind]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {count} {kind} request(s); got {len(found)}")
                self._changed.wait(left)

    def check(self) -> None:
        """Fail if the CLI made a request the script did not expect."""
        if self.unexpected:
            raise AssertionError("fake API got unexpected requests:\n" + "\n".join(self.unexpected))

    # --- called by the handler ---------------------------------------------------

    def _record(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[Recorded, Turn | ApiError | None]:
        with self._changed:
            if method == "POST" and path.split("?", 1)[0] == "/v1/messages" and isinstance(body, dict):
                kind = "agent" if body.get("tools") else "side"
            elif method == "HEAD":
                kind = "probe"
            else:
                kind = "other"
            index = sum(1 for r in self.requests if r.kind == kind)
            rec = Recorded(method, path, headers, body, kind, index)
            self.requests.append(rec)
            answer: Turn | ApiError | None = None
            if kind == "agent":
                if index < len(self.script):
                    answer = self.script[index]
                else:
                    self.unexpected.append(f"agent request #{index + 1} beyond the script of {len(self.script)}")
            elif kind == "other":
                self.unexpected.append(f"{method} {path}")
            elif kind == "side":
                answer = self.side_script[index] if index < len(self.side_script) else Turn.text("ok", self.side_usage)
            self._changed.notify_all()
            return rec, answer

    def _note(self, problem: str) -> None:
        with self._lock:
            self.unexpected.append(problem)

    def _answered(self, rec: Recorded, status: int, message_id: str | None, request_id: str, usage: Usage | None) -> None:
        with self._changed:
            rec.status, rec.message_id, rec.request_id, rec.usage = status, message_id, request_id, usage
            self._changed.notify_all()


def sse_events(turn: Turn, model: str, message_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The ``(event, data)`` pairs of one streamed response, as the Messages API sends them."""
    stop_reason = turn.stop_reason or ("tool_use" if any(b.type == "tool_use" for b in turn.blocks) else "end_turn")
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": turn.model or model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": turn.usage.start_json(),
                },
            },
        ),
        ("ping", {"type": "ping"}),
    ]
    for i, block in enumerate(turn.blocks):
        if block.type == "text":
            start: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": block.text}]
        elif block.type == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [
                {"type": "thinking_delta", "thinking": block.text},
                {"type": "signature_delta", "signature": "sig_" + uuid.uuid4().hex},
            ]
        else:
            start = {"type": "tool_use", "id": block.id or f"toolu_{uuid.uuid4().hex[:24]}", "name": block.name, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": json.dumps(block.input)}]
        events.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": start}))
        for delta in deltas:
            events.append(("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": turn.usage.final_json(),
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # the CLI hanging up mid-answer (an interrupt, a stop) is expected, not a test error
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    api: FakeAPI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_HEAD(self) -> None:
        # A reachability probe: 2.1.197 sends HEAD /, 2.1.330 HEAD /api/hello
        # (only without CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC).
        self.api._record("HEAD", self.path, dict(self.headers), None)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._other("GET")

    def do_POST(self) -> None:
        raw = self._read_body()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        rec, answer = self.api._record("POST", self.path, dict(self.headers), body)
        request_id = f"req_{uuid.uuid4().hex}"
        if rec.kind == "other":
            self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": "not here"}}, request_id)
            self.api._answered(rec, 404, None, request_id, None)
            return
        if answer is None:
            msg = f"fake API: no scripted turn for agent request #{rec.index + 1}"
            self._json(400, {"type": "error", "error": {"type": "invalid_request_error", "message": msg}}, request_id)
            self.api._answered(rec, 400, None, request_id, None)
            return
        if isinstance(answer, ApiError):
            self._json(answer.status, {"type": "error", "error": {"type": answer.type, "message": answer.message}}, request_id, answer.headers)
            self.api._answered(rec, answer.status, None, request_id, None)
            return
        if answer.gate is not None and not answer.gate.wait(answer.gate_timeout):
            self.api._note(f"agent request #{rec.index + 1}: gate not opened within {answer.gate_timeout} s")
        message_id = f"msg_{uuid.uuid4().hex[:24]}"
        model = str(body.get("model") or "claude-unknown")
        payload = b"".join(
            f"event: {event}\ndata: {json.dumps(data)}\n\n".encode() for event, data in sse_events(answer, model, message_id)
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("request-id", request_id)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()
        self.api._answered(rec, 200, message_id, request_id, answer.usage)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers, then the blank line
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _other(self, method: str) -> None:
        self.api._record(method, self.path, dict(self.headers), None)
        self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": "not here"}}, "req_none")

    def _json(self, status: int, data: dict[str, Any], request_id: str, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("request-id", request_id)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
