"""``sessionwatch agent`` for real: agents as separate processes, each with
its own HOME, transcripts and host name, pushing to a real ``sessionwatch
serve``; one of them cut off by a TCP proxy the test pauses.

- three machines: the central ``/all`` ends with every session of every
  machine exactly once, with its host; a stream client saw them in order
  (ids increasing, the state it builds from the events equals ``/all``);
- a batch sent twice changes nothing the second time; bad batches are 4xx;
- an agent killed: its sessions ``stale`` ("agent <host> silent") after
  ``--agent-stale-after-s``; a restarted server still shows them; a new
  agent process with the same queue (the same agent id) brings them back;
- an approval answered on the central dashboard reaches a Claude Code
  session on an agent's machine (the real CLI, hooks to the agent's receiver).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import FIXTURES, Server, free_port, wait_for
from .sse import SSEClient


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class Proxy:
    """A TCP proxy to ``target`` the test can cut (``pause``: connections
    dropped, nothing listens) and let back (``resume``: the same port)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        #: the server's answers are lost: a connection that gets one is cut instead
        self.drop_answers = False

    def start(self) -> Proxy:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        self._server = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()
        return self

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b, answers in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pipe, args=(a, b, answers), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket, answers: bool) -> None:
        try:
            while data := a.recv(65536):
                if answers and self.drop_answers:
                    break  # the request was served; its answer never arrives
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def pause(self) -> None:
        assert self._server is not None
        try:
            self._server.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self._server.close()
        self._server = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    resume = start


class Agent:
    """One ``sessionwatch agent`` process on its own "machine" (a HOME)."""

    def __init__(self, home: Path, host_name: str, server_url: str, log: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.host_name = host_name
        self.server_url = server_url
        self.port = free_port()
        self.queue = home / "agent-queue.db"
        self.log = log
        self.extra = list(extra)
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def projects_dir(self) -> Path:
        return self.home / ".claude" / "projects"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Agent:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONWATCH_")}
        env["HOME"] = str(self.home)
        env.pop("XDG_DATA_HOME", None)
        env.update(self.env)
        args = [
            sys.executable, "-m", "sessionwatch", "agent",
            "--server", self.server_url,
            "--host-name", self.host_name,
            "--port", str(self.port),
            "--projects-dir", str(self.projects_dir),
            "--queue", str(self.queue),
            *self.extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=env)

        def healthy() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"agent exited: {self.log.read_text()[-2000:]}")
            try:
                return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 30, f"agent {self.host_name} to answer /healthz")
        return self

    def local(self) -> dict[str, dict[str, Any]]:
        """The sessions this agent's own engine shows, by id."""
        return {s["id"]: s for s in httpx.get(self.url + "/all", timeout=5).json()["sessions"]}

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"agent {self.host_name} did not stop on SIGINT")
        finally:
            self.proc = None


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    started: list[Agent] = []

    def make(home: Path, host_name: str, server_url: str, *extra: str, env: dict[str, str] | None = None) -> Agent:
        a = Agent(home, host_name, server_url, tmp_path / f"agent-{host_name}-{len(started)}.log", *extra, env=env)
        started.append(a)
        return a.start()

    yield make
    for a in started:
        if a.proc is not None:
            a.stop()


def machine(root: Path, name: str, project_dirs: list[Path]) -> Path:
    """A HOME with some of the fixture projects in its ~/.claude/projects."""
    home = root / name
    projects = home / ".claude" / "projects"
    projects.mkdir(parents=True)
    for d in project_dirs:
        shutil.copytree(d, projects / d.name)
    return home


def central_all(srv: Server, **params: str) -> dict[str, dict[str, Any]]:
    r = httpx.get(srv.url + "/all", params=params, timeout=5)
    assert r.status_code == 200, r.text
    sessions = r.json()["sessions"]
    ids = [s["id"] for s in sessions]
    assert len(ids) == len(set(ids)), "a session twice in /all"
    return {s["id"]: s for s in sessions}


def same_everywhere(srv: Server, machines: list[Agent]) -> bool:
    """Central /all is exactly every agent's own sessions, each with its host."""
    central = central_all(srv)
    expected: dict[str, dict[str, Any]] = {}
    for a in machines:
        for sid, s in a.local().items():
            expected[sid] = {**s, "host": a.host_name}
    return central == expected


def new_session(projects: Path, project: str, prompt: str) -> str:
    sid = str(uuid.uuid4())
    folder = projects / project
    folder.mkdir(parents=True, exist_ok=True)
    line = {
        "type": "user", "sessionId": sid, "cwd": "/work/" + project, "uuid": str(uuid.uuid4()),
        "timestamp": now_iso(), "message": {"role": "user", "content": prompt},
    }  # fmt: skip
    (folder / f"{sid}.jsonl").write_text(json.dumps(line) + "\n")
    return sid


def apply_events(events: list[Any]) -> dict[str, dict[str, Any]]:
    """The state a stream client builds: init/refresh replace, created/updated upsert, deleted removes."""
    state: dict[str, dict[str, Any]] = {}
    for e in events:
        sessions = e.data["sessions"]
        if e.event in ("init", "refresh"):
            state = {s["id"]: s for s in sessions}
        elif e.event in ("session-created", "session-updated"):
            state.update({s["id"]: s for s in sessions})
        elif e.event == "session-deleted":
            for s in sessions:
                state.pop(s["id"], None)
    return state


def test_three_agents_one_cut_off_every_session_once_with_its_host_in_order(
    tmp_path: Path, sw_server: Callable[..., Server], agents: Callable[..., Agent]
) -> None:
    (tmp_path / "central").mkdir()
    srv = sw_server(projects_dir=tmp_path / "central")
    stream = SSEClient(srv.url + "/stream").start()
    assert stream.next().event == "init"
    dirs = sorted(p for p in FIXTURES.iterdir() if p.is_dir())
    names = ["alpha", "beta", "gamma"]
    homes = [machine(tmp_path, n, dirs[i::3]) for i, n in enumerate(names)]
    proxy = Proxy(srv.port).start()
    machines = [
        agents(homes[0], "alpha", srv.url),
        agents(homes[1], "beta", f"http://127.0.0.1:{proxy.port}"),
        agents(homes[2], "gamma", srv.url),
    ]
    wait_for(lambda: same_everywhere(srv, machines), 60, "every machine's sessions on the central server")
    first = central_all(srv)
    by_host = {n: {sid for sid, s in first.items() if s["host"] == n} for n in names}
    for a in machines:
        assert by_host[a.host_name] == set(a.local()), a.host_name
        assert by_host[a.host_name], f"{a.host_name} has no sessions"
    assert set(central_all(srv, host="beta")) == by_host["beta"]

    # beta is cut off: its news waits in its queue; the others go on
    proxy.pause()
    beta, alpha = machines[1], machines[0]
    cut_off = [new_session(beta.projects_dir, "-work-beta", f"while cut off {i}") for i in range(3)]
    wait_for(lambda: set(cut_off) <= set(beta.local()), 30, "beta's own engine to see its new sessions")
    gone = next(sid for sid in sorted(by_host["beta"]) if any(beta.projects_dir.rglob(f"{sid}.jsonl")))
    for path in beta.projects_dir.rglob(f"{gone}*"):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    wait_for(lambda: gone not in beta.local(), 30, "beta's own engine to drop a deleted session")
    meanwhile = new_session(alpha.projects_dir, "-work-alpha", "alpha goes on")
    wait_for(lambda: meanwhile in central_all(srv), 30, "alpha's new session while beta is cut off")
    central = central_all(srv)
    assert not set(cut_off) & set(central) and gone in central, "beta's news reached the server through a cut proxy"

    proxy.resume()
    wait_for(lambda: same_everywhere(srv, machines), 60, "beta's queued news after it is let back")
    final = central_all(srv)
    assert {final[sid]["host"] for sid in cut_off} == {"beta"} and gone not in final

    # the stream client saw it all, in order, and ends with /all
    def caught_up() -> bool:
        return apply_events(seen) == final

    seen: list[Any] = []

    def drain() -> bool:
        seen.extend(e for e in stream.drain() if e.event != "keepalive")
        return caught_up()

    seen.append(stream.next())  # at least one event since init
    wait_for(drain, 30, "the stream client to end with /all")
    ids = [int(e.id) for e in seen if e.id is not None]
    assert ids == sorted(ids) and len(ids) == len(set(ids)), "event ids not increasing"
    proxy.pause()


def push(srv: Server, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(srv.url + "/agents/push", json=body, timeout=5, **kw)


def a_session(sid: str, **kw: Any) -> dict[str, Any]:
    from sessionwatch.model import to_dict

    from .sessions import session

    return to_dict(session(sid, **kw))


def test_a_batch_sent_twice_changes_nothing_the_second_time(tmp_path: Path, sw_server: Callable[..., Server]) -> None:
    (tmp_path / "central").mkdir()
    srv = sw_server(projects_dir=tmp_path / "central")
    batch = {"agent": "a1", "host": "delta", "seq": 1, "upserts": [a_session("s-1", title="one")], "deletes": [], "sync": []}
    r = push(srv, batch)
    assert r.status_code == 200 and r.json()["duplicate"] is False and r.json()["resync"] is False, r.text
    # an agent the server does not know, without sync, is asked for everything
    assert push(srv, {**batch, "agent": "a2", "sync": None, "upserts": []}).json()["resync"] is True
    last = httpx.get(srv.url + "/all").json()["last_event_id"]
    again = push(srv, {**batch, "upserts": [a_session("s-1", title="changed on the way")]})
    assert again.status_code == 200 and again.json() == {**r.json(), "duplicate": True}
    after = httpx.get(srv.url + "/all").json()
    assert after["last_event_id"] == last, "a repeated batch made an event"
    [s] = after["sessions"]
    assert (s["id"], s["title"], s["host"]) == ("s-1", "one", "delta")
    # the next seq applies; a delete of another agent's id changes nothing
    assert push(srv, {**batch, "seq": 2, "upserts": [], "deletes": ["s-1"]}).status_code == 200
    assert httpx.get(srv.url + "/all").json()["sessions"] == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"host": "h", "seq": 1}, "agent is required"),
        ({"agent": "a/b", "host": "h", "seq": 1}, "agent must be 1 to 128 letters"),
        ({"agent": "a", "host": "h", "seq": -1}, "seq must be an integer, 0 or more"),
        ({"agent": "a", "host": "h", "seq": True}, "seq must be an integer, 0 or more"),
        ({"agent": "a", "host": "h", "seq": 1, "upserts": {}}, "upserts must be a list of sessions"),
        ({"agent": "a", "host": "h", "seq": 1, "upserts": [{"id": "x"}]}, "upserts[0] is not a session"),
        ({"agent": "a", "host": "h", "seq": 1, "deletes": [1]}, "deletes must be a list of session ids"),
        ([1, 2], "request body must be a JSON object"),
    ],
)
def test_bad_batches_are_refused_with_a_sentence(shared_server: Server, body: Any, error: str) -> None:
    r = push(shared_server, body)
    assert r.status_code == 400 and r.json()["error"].startswith(error), r.text


def test_commands_long_poll_validates_and_answers_with_the_away_switch(shared_server: Server) -> None:
    r = httpx.get(shared_server.url + "/agents/a1/commands", params={"after": 0, "wait": 0})
    assert r.status_code == 200 and r.json() == {"commands": [], "latest": 0, "away": {"on": False, "by": None}}
    # an agent that had commands from another database hears at once where this one stands
    assert httpx.get(shared_server.url + "/agents/a1/commands", params={"after": 57, "wait": 30}).json()["latest"] == 0
    assert httpx.get(shared_server.url + "/agents/a1/commands", params={"wait": 999}).status_code == 400
    assert httpx.get(shared_server.url + "/agents/a1/commands", params={"after": "x"}).status_code == 400


def test_a_killed_agent_goes_stale_and_comes_back_and_a_restarted_server_keeps_its_sessions(
    tmp_path: Path, sw_server: Callable[..., Server], agents: Callable[..., Agent]
) -> None:
    (tmp_path / "central").mkdir()
    flags = ["--agent-stale-after-s", "2"]
    srv = sw_server(projects_dir=tmp_path / "central", extra_args=flags)
    home = machine(tmp_path, "epsilon", sorted(p for p in FIXTURES.iterdir() if p.is_dir())[:2])
    agent = agents(home, "epsilon", srv.url)
    wait_for(lambda: same_everywhere(srv, [agent]), 60, "the agent's sessions")
    ids = set(agent.local())
    [listed] = httpx.get(srv.url + "/agents").json()["agents"]
    assert (listed["host"], listed["sessions"], listed["stale"]) == ("epsilon", len(ids), False)
    agent_id = listed["agent"]

    agent.kill()

    def all_stale() -> bool:
        c = central_all(srv)
        return set(c) == ids and all(
            s["status"] == "stale" and s["status_reason"] == "agent epsilon silent" and s["is_stale"] for s in c.values()
        )

    wait_for(all_stale, 30, "the killed agent's sessions to be stale")

    # a restarted server shows them at once, from its database
    port = srv.port
    srv.stop()
    srv = sw_server(projects_dir=tmp_path / "central", extra_args=flags, port=port)
    assert set(central_all(srv)) == ids
    assert {s["host"] for s in central_all(srv).values()} == {"epsilon"}

    # a new agent process with the same queue is the same agent: fresh again
    again = agents(home, "epsilon", srv.url)
    wait_for(lambda: same_everywhere(srv, [again]), 60, "the agent's sessions fresh again")
    [listed] = httpx.get(srv.url + "/agents").json()["agents"]
    assert (listed["agent"], listed["stale"]) == (agent_id, False)


HOOK_EVENTS = ("UserPromptSubmit", "PreToolUse", "PermissionRequest", "PostToolUse", "PostToolUseFailure", "Stop", "SessionEnd")


def test_an_approval_on_the_central_dashboard_reaches_claude_code_on_an_agents_machine(
    tmp_path: Path, sw_server: Callable[..., Server], agents: Callable[..., Agent]
) -> None:
    """Away mode set centrally holds the Write's PermissionRequest in the agent's
    hooks receiver; the central POST /approve goes down to the agent, which
    answers Claude Code's hook: the file is written. A budget set centrally is
    set on the agent and comes back in its pushed row."""
    from .claude_cli import ClaudeHome, ClaudeRun, claude_bin, run_claude
    from .fakeapi import FakeAPI, Turn

    claude_bin()
    where = ClaudeHome.create(tmp_path)
    (tmp_path / "central").mkdir()
    srv = sw_server(projects_dir=tmp_path / "central")
    agent = agents(where.home, "zeta", srv.url, "--approval-wait-s", "60")
    hooks = [{"type": "http", "url": agent.url + "/hooks", "timeout": 90}]
    where.write_settings({"hooks": {e: [{"hooks": hooks}] for e in HOOK_EVENTS}})

    httpx.put(srv.url + "/away", json={"on": True}).raise_for_status()
    wait_for(lambda: httpx.get(agent.url + "/away").json()["on"], 30, "the agent to follow the central away switch")

    target = where.cwd / "from-central.txt"
    sid = str(uuid.uuid4())
    out: list[ClaudeRun] = []
    with FakeAPI([Turn.tool_use("Write", {"file_path": str(target), "content": "approved centrally\n"}), Turn.text("done")]) as api:
        t = threading.Thread(target=lambda: out.append(run_claude(where, api.url, "write the file", "--session-id", sid, timeout=120)), daemon=True)
        t.start()

        def pending() -> dict[str, Any] | None:
            s = central_all(srv).get(sid)
            p = s and s["pending"]
            return p if p and p["answerable"] else None

        p = wait_for(pending, 60, "the held prompt to show, answerable, on the central server")
        assert isinstance(p, dict) and p["tool"] == "Write"
        assert central_all(srv)[sid]["host"] == "zeta" and central_all(srv)[sid]["status"] == "needs_approval"
        [waiting] = httpx.get(srv.url + "/away").json()["waiting"]
        assert (waiting["session_id"], waiting["pending_id"], waiting["host"]) == (sid, p["id"], "zeta")
        r = httpx.post(srv.url + f"/sessions/{sid}/approve", json={"pending_id": p["id"], "decision": "allow"})
        assert r.status_code == 200, r.text
        assert (r.json()["host"], r.json()["by"]["who"]) == ("zeta", "local")
        again = httpx.post(srv.url + f"/sessions/{sid}/approve", json={"pending_id": p["id"], "decision": "deny"})
        assert again.status_code == 409, again.text
        t.join(120)
    assert out and out[0].returncode == 0, out[0].describe() if out else "the CLI did not finish"
    assert target.read_text() == "approved centrally\n"
    [central_record] = httpx.get(srv.url + f"/sessions/{sid}").json()["approvals"]
    assert central_record["decision"] == "allow" and central_record["pending_id"] == p["id"]
    [local_record] = httpx.get(agent.url + f"/sessions/{sid}").json()["approvals"]
    assert local_record["decision"] == "allow" and local_record["by"]["who"] == "local"
    wait_for(lambda: central_all(srv)[sid]["pending"] is None, 30, "the answered prompt to clear centrally")

    # a budget set centrally is set on the agent, and its row comes back with it
    r = httpx.put(srv.url + f"/sessions/{sid}/budget", json={"max_cost_usd": 5})
    assert r.status_code == 200, r.text
    wait_for(lambda: httpx.get(agent.url + f"/sessions/{sid}").json()["budget"]["own"] == 5, 30, "the budget on the agent")
    wait_for(lambda: central_all(srv)[sid]["max_cost_usd"] == 5, 30, "the agent's row with the budget")


def test_the_queue_keeps_the_latest_state_of_each_session_and_resends_a_batch_byte_for_byte(tmp_path: Path) -> None:
    from sessionwatch.agents.queue import Queue

    q = Queue(tmp_path / "q.db")
    agent = q.agent_id
    q.put([("a", b'{"id":"a","v":1}'), ("b", b'{"id":"b","v":1}')])
    q.put([("a", b'{"id":"a","v":2}'), ("c", None)])
    assert q.depth() == 3  # one row per session, however often it changed
    batch = q.next_batch(agent, "h", ["a", "b"])
    assert batch is not None
    seq, body, new = batch
    sent = json.loads(body)
    assert (seq, new, sent["seq"], sent["sync"]) == (1, True, 1, ["a", "b"])
    assert [u["id"] for u in sent["upserts"]] == ["b", "a"] and sent["upserts"][1]["v"] == 2
    assert sent["deletes"] == ["c"]
    # no answer: the same batch again, even after a restart and newer changes
    q.put([("b", b'{"id":"b","v":3}')])
    q.close()
    q = Queue(tmp_path / "q.db")
    assert q.agent_id == agent
    assert q.next_batch(agent, "h", None) == (1, body, False)
    q.acked(1)
    # what changed after the batch was made stays for the next one
    assert q.depth() == 1
    batch = q.next_batch(agent, "h", None)
    assert batch is not None and batch[0] == 2 and json.loads(batch[1])["upserts"] == [{"id": "b", "v": 3}]
    q.acked(2)
    assert q.next_batch(agent, "h", None) is None and q.depth() == 0
    q.close()


def test_a_silent_agents_prompt_cannot_be_answered_centrally(tmp_path: Path, sw_server: Callable[..., Server]) -> None:
    (tmp_path / "central").mkdir()
    srv = sw_server(projects_dir=tmp_path / "central", extra_args=["--agent-stale-after-s", "1"])
    pending = {"id": "p1", "kind": "permission", "tool": "Bash", "summary": "Bash: ls", "since": None, "answerable": True}
    s = a_session("s-9", status="needs_approval", pending=pending)
    assert push(srv, {"agent": "a9", "host": "eta", "seq": 1, "upserts": [s], "sync": []}).status_code == 200
    wait_for(lambda: central_all(srv)["s-9"]["status"] == "stale", 30, "the silent agent's session to be stale")
    shown = central_all(srv)["s-9"]
    assert shown["status_reason"] == "agent eta silent" and shown["pending"]["answerable"] is False
    r = httpx.post(srv.url + "/sessions/s-9/approve", json={"pending_id": "p1", "decision": "allow"})
    assert r.status_code == 409, r.text
    # it pushes again (its heartbeat: the same seq): answerable, and the answer is queued for it
    assert push(srv, {"agent": "a9", "host": "eta", "seq": 1}).json()["duplicate"] is True

    def answered() -> bool:
        # a loaded machine may let a second pass between the heartbeat and the answer: beat again
        push(srv, {"agent": "a9", "host": "eta", "seq": 1})
        r = httpx.post(srv.url + "/sessions/s-9/approve", json={"pending_id": "p1", "decision": "deny", "message": "no"})
        assert r.status_code in (200, 409), r.text
        return r.status_code == 200

    wait_for(answered, 30, "the answer to be taken")
    [c] = httpx.get(srv.url + "/agents/a9/commands", params={"after": 0, "wait": 0}).json()["commands"]
    assert (c["kind"], c["session_id"], c["pending_id"], c["decision"], c["message"]) == ("approve", "s-9", "p1", "deny", "no")
    assert httpx.get(srv.url + "/agents/a9/commands", params={"after": c["id"], "wait": 0}).json()["commands"] == []


def bearer_of(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_with_a_token_the_agent_pushes_with_it_and_a_wrong_one_keeps_everything_queued(
    tmp_path: Path, sw_server: Callable[..., Server], agents: Callable[..., Agent]
) -> None:
    (tmp_path / "central").mkdir()
    made = subprocess.run(
        [sys.executable, "-m", "sessionwatch", "token", "create", "iota-laptop", "--role", "agent", "--db", str(tmp_path / "sessionwatch.db")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    agent_token = made.stdout.strip()
    srv = sw_server(projects_dir=tmp_path / "central", extra_args=["--token", "t0ken"])
    auth = {"Authorization": "Bearer t0ken"}
    assert httpx.post(srv.url + "/agents/push", json={}).status_code == 401
    dirs = sorted(p for p in FIXTURES.iterdir() if p.is_dir())
    # (both from 127.0.0.1 here, so one address's sign-in budget: a wrong token waits a minute between tries)
    wrong = agents(machine(tmp_path, "theta", dirs[:1]), "theta", srv.url, env={"SESSIONWATCH_TOKEN": "nope"})
    # a named token with the agent role: enough to push and to follow the commands
    right = agents(machine(tmp_path, "iota", dirs[1:2]), "iota", srv.url, env={"SESSIONWATCH_TOKEN": agent_token})

    def iota_there() -> bool:
        got = httpx.get(srv.url + "/all", headers=auth).json()["sessions"]
        return {s["id"] for s in got} == set(right.local()) and {s["host"] for s in got} == {"iota"}

    wait_for(iota_there, 60, "the agent with the right token to push")
    wait_for(lambda: "cannot push to" in wrong.log.read_text() and "HTTP 401" in wrong.log.read_text(), 30, "the refused agent to say why")
    assert [a["host"] for a in httpx.get(srv.url + "/agents", headers=auth).json()["agents"]] == ["iota"]
    # the agent's token may not act: the approvals come from an operator on the dashboard
    assert httpx.put(srv.url + "/away", json={"on": True}, headers=bearer_of(agent_token)).status_code == 403
    assert httpx.get(srv.url + "/agents/x/commands", params={"wait": 0}, headers=bearer_of(agent_token)).status_code == 200


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--server", "ftp://x"], "--server must be an http(s) URL"),
        (["--host-name", "bad name"], "--host-name must be 1 to 128 letters"),
        (["--port", "70000"], "not a port number"),
        (["--queue", "{tmp}"], "is a directory, not a file"),
    ],
)
def test_agent_bad_flags_are_one_line_and_exit_2(tmp_path: Path, args: list[str], error: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSIONWATCH_")}
    argv = [sys.executable, "-m", "sessionwatch", "agent", *(a.format(tmp=tmp_path) for a in args)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**env, "HOME": str(tmp_path)})
    assert r.returncode == 2 and error in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


from .test_web_e2e import browser, open_page, row_ids, wait_indicator, wait_rows  # noqa: E402,F401 - the web tests' fixtures


def test_the_web_page_shows_each_sessions_host_and_filters_by_it(tmp_path: Path, sw_server: Callable[..., Server], open_page: Any) -> None:
    (tmp_path / "central").mkdir()
    srv = sw_server(projects_dir=tmp_path / "central")
    for n, (agent, host) in enumerate((("a1", "alpha"), ("a2", "beta"))):
        body = {"agent": agent, "host": host, "seq": 1, "sync": [], "upserts": [a_session(f"s-{n}-{i}", title=f"{host} {i}") for i in range(2)]}
        assert push(srv, body).status_code == 200
    page = open_page(srv.url + "/")
    wait_indicator(page, ("Live",))
    wait_rows(page, 4, 10_000)
    assert page.inner_text('tr[data-id="s-1-0"] td[data-col="host"]') == "beta"
    assert page.eval_on_selector_all("#host option", "os => os.map(o => o.value)") == ["", "alpha", "beta"]
    page.select_option("#host", "beta")
    wait_rows(page, 2, 10_000)
    assert sorted(row_ids(page)) == ["s-1-0", "s-1-1"] and "host=beta" in page.url
    # a new machine shows up in the menu as its sessions arrive
    assert push(srv, {"agent": "a3", "host": "gamma", "seq": 1, "sync": [], "upserts": [a_session("s-2-0")]}).status_code == 200
    page.wait_for_function("() => [...document.querySelectorAll('#host option')].some(o => o.value === 'gamma')", timeout=10_000)
    assert sorted(row_ids(page)) == ["s-1-0", "s-1-1"]


def agent_batches(srv: Server) -> dict[str, float]:
    text = httpx.get(srv.url + "/metrics").text
    out = {}
    for result in ("applied", "duplicate"):
        found = [line for line in text.splitlines() if line.startswith(f'sessionwatch_agent_batches_total{{result="{result}"}}')]
        out[result] = float(found[0].split()[-1]) if found else 0.0
    return out


def test_a_batch_whose_answer_is_lost_is_sent_again_and_applied_once(
    tmp_path: Path, sw_server: Callable[..., Server], agents: Callable[..., Agent]
) -> None:
    (tmp_path / "central").mkdir()
    srv = sw_server(projects_dir=tmp_path / "central")
    proxy = Proxy(srv.port).start()
    home = machine(tmp_path, "kappa", [])
    agent = agents(home, "kappa", f"http://127.0.0.1:{proxy.port}")
    sid = new_session(agent.projects_dir, "-work-kappa", "first")
    wait_for(lambda: same_everywhere(srv, [agent]), 60, "the first session")
    before = agent_batches(srv)
    seq = httpx.get(srv.url + "/agents").json()["agents"][0]["seq"]

    proxy.drop_answers = True
    transcript = next(agent.projects_dir.rglob(f"{sid}.jsonl"))
    line = json.loads(transcript.read_text())
    with transcript.open("a") as f:
        f.write(json.dumps({**line, "uuid": str(uuid.uuid4()), "timestamp": now_iso(), "message": {"role": "user", "content": "second"}}) + "\n")
    wait_for(lambda: central_all(srv)[sid]["message_count"] == 2, 30, "the server to apply the batch whose answer is lost")
    wait_for(lambda: agent_batches(srv)["duplicate"] > before["duplicate"], 30, "the agent to send the same batch again")
    assert agent_batches(srv)["applied"] == before["applied"] + 1, "the batch re-sent was applied again"
    proxy.drop_answers = False
    wait_for(lambda: "reachable again" in agent.log.read_text(), 30, "the agent to get an answer again")
    assert httpx.get(srv.url + "/agents").json()["agents"][0]["seq"] == seq + 1
    assert same_everywhere(srv, [agent])
    proxy.pause()
