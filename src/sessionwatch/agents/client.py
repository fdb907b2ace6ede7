"""``sessionwatch agent``: this machine's sessions, pushed to a central server.

The agent is a small ``serve`` of its own on 127.0.0.1 (``--port``): the same
engine (transcripts, the live registry, hooks on ``POST /hooks``, so
``sessionwatch hooks install`` points Claude Code at it) with its own SQLite
file, and the same Control (away mode holds a PermissionRequest hook, budgets
deny). Beside it, two tasks:

- the **pusher**: a hub listener notes each changed session; the changes go
  to the local queue (agents/queue.py: the latest state of each session
  wins) and out as ``POST /agents/push`` batches, in order, one at a time,
  each re-sent until the server answers it (idempotent by agent and seq); a
  server that cannot be reached is tried again with backoff while changes
  wait in the queue. After a start the first new batch carries ``sync`` (every
  id the agent has), so the server forgets what ended while the agent was
  down. Nothing new: a heartbeat (the last seq again) every ``heartbeat_s``
  the server asks for.
- the **follower**: a long poll on ``GET /agents/{agent}/commands``: an
  approval answered on the central dashboard is given to this agent's Control,
  which answers the held hook; a budget set there is set here; the away
  switch follows the server's. A long poll rather than the push's answer: a
  held prompt changes nothing, so no push would come to carry the answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio
import httpx
import msgspec

from sessionwatch.agents.queue import Queue
from sessionwatch.agents.wire import MAX_SESSIONS
from sessionwatch.model import Session, encode
from sessionwatch.store.base import Actor

log = logging.getLogger("sessionwatch.agent")

#: Backoff while the server cannot be reached, first and longest.
BACKOFF_S: Final = (0.2, 5.0)
#: How long the server may hold a commands request.
POLL_WAIT_S: Final = 25.0
#: Deletions (which hub listeners do not hear) are looked for this often.
CHECK_S: Final = 0.5
#: A token refused (401/403) or throttled (429, without Retry-After): tried again
#: this much later, so a wrong token does not use up the address's sign-in budget.
REFUSED_S: Final = 60.0


@dataclass(frozen=True)
class AgentOptions:
    server: str
    token: str | None
    host_name: str
    queue: Path


def _actor(by: Any, server: str) -> Actor:
    by = by if isinstance(by, dict) else {}
    return Actor(
        who=str(by.get("who") or "server"),
        address=str(by.get("address") or server),
        origin=by.get("origin") if isinstance(by.get("origin"), str) else None,
        user_agent=by.get("user_agent") if isinstance(by.get("user_agent"), str) else None,
    )


class Agent:
    """The pusher and the follower over an engine and its Control (see the module)."""

    def __init__(self, engine: Any, control: Any, queue: Queue, options: AgentOptions) -> None:
        self.engine = engine
        self.control = control
        self.queue = queue
        self.options = options
        self.agent_id = queue.agent_id
        self.host = options.host_name
        self.heartbeat_s = 5.0
        self._dirty: dict[str, None] = {}
        self._known: set[str] = set()
        self._seen_id = -1
        self._wake = asyncio.Event()
        self._sync = True
        self._unreachable = False
        #: set by a 401/403/429: how long to wait before the next try
        self._refused_for: float | None = None
        headers = {"Authorization": f"Bearer {options.token}"} if options.token else {}
        self.client = httpx.AsyncClient(base_url=options.server, headers=headers, timeout=httpx.Timeout(10.0))
        engine.hub.listeners.append(self.observe)

    # --- the hub listener ----------------------------------------------------------------

    def observe(self, old: Session | None, new: Session) -> None:
        self._dirty[new.id] = None
        self._wake.set()

    def _collect(self) -> list[tuple[str, bytes | None]]:
        """The changes since the last call: changed sessions whole (with this host), and deletions."""
        sessions = self.engine.hub.sessions
        changes: list[tuple[str, bytes | None]] = []
        dirty, self._dirty = self._dirty, {}
        for sid in dirty:
            s = sessions.get(sid)
            if s is not None:
                changes.append((sid, encode(msgspec.structs.replace(s, host=self.host))))
                self._known.add(sid)
        last = self.engine.hub.last_id
        if last != self._seen_id:
            self._seen_id = last
            for sid in [sid for sid in self._known if sid not in sessions]:
                self._known.discard(sid)
                changes.append((sid, None))
        return changes

    def _resync(self) -> None:
        self._sync = True
        for sid in self.engine.hub.sessions:
            self._dirty[sid] = None

    # --- pushing ---------------------------------------------------------------------------

    async def push_forever(self) -> None:
        """Until cancelled: the pusher (see the module). An unexpected error
        (the queue's disk, say) is logged and the loop goes on after a pause."""
        self._resync()
        while True:
            try:
                await self._push_loop()
            except Exception:  # noqa: BLE001 - the pusher must never die
                log.exception("pushing failed; again in %g s", BACKOFF_S[1])
                await anyio.sleep(BACKOFF_S[1])
                self._resync()  # whatever was collected but not queued goes out again

    async def _push_loop(self) -> None:
        backoff = BACKOFF_S[0]
        last_contact = 0.0
        while True:
            self._wake.clear()  # before collecting: a change noted from here on wakes the wait below
            changes = self._collect()
            if changes:
                await anyio.to_thread.run_sync(self.queue.put, changes)
            sync = list(self.engine.hub.sessions) if self._sync else None
            if sync is not None and len(sync) > MAX_SESSIONS:
                sync = None  # more than a batch may name: no forgetting, every session still goes out
                self._sync = False
            batch = await anyio.to_thread.run_sync(self.queue.next_batch, self.agent_id, self.host, sync)
            heartbeat = False
            if batch is None:
                wait = self.heartbeat_s - (time.monotonic() - last_contact)
                if wait > 0:
                    with anyio.move_on_after(min(wait, CHECK_S)):
                        await self._wake.wait()
                    continue
                heartbeat = True
                body = msgspec.json.encode({"agent": self.agent_id, "host": self.host, "seq": self.queue.seq, "upserts": [], "deletes": []})
                seq = self.queue.seq
            else:
                seq, body, new = batch
                if new and sync is not None:
                    self._sync = False
            answer = await self._post(body)
            if answer is None:  # not answered: the same batch again, later
                await anyio.sleep(self._refused_for or backoff)
                backoff = min(BACKOFF_S[1], backoff * 2)
                continue
            backoff = BACKOFF_S[0]
            last_contact = time.monotonic()
            if not heartbeat:
                await anyio.to_thread.run_sync(self.queue.acked, seq)
            if isinstance(answer.get("heartbeat_s"), (int, float)) and answer["heartbeat_s"] > 0:
                self.heartbeat_s = float(answer["heartbeat_s"])
            if answer.get("resync"):
                self._resync()

    async def _post(self, body: bytes) -> dict[str, Any] | None:
        """POST one batch; its answer, {} for a batch the server can never take
        (dropped, logged), None if it must be sent again."""
        self._refused_for = None
        try:
            r = await self.client.post("/agents/push", content=body, headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            self._down(f"{type(exc).__name__}: {exc}")
            return None
        if r.status_code == 200:
            if self._unreachable:
                self._unreachable = False
                log.info("server %s reachable again; sending what waited", self.options.server)
            try:
                data = r.json()
            except ValueError:
                data = {}  # taken; an answer we cannot read changes nothing here
            return data if isinstance(data, dict) else {}
        reason = _error(r)
        if r.status_code in (400, 413, 422):
            log.error("the server refused a batch (%s): %s; dropped", r.status_code, reason)
            return {}
        self._refused_for = refused_wait(r)
        self._down(f"HTTP {r.status_code}: {reason}")
        return None

    def _down(self, why: str) -> None:
        if not self._unreachable:
            self._unreachable = True
            log.warning("cannot push to %s (%s); keeping changes in %s", self.options.server, why, self.queue.path)

    # --- following what comes down -----------------------------------------------------------

    async def follow_forever(self) -> None:
        """Until cancelled: the follower (see the module); never dies of an error."""
        while True:
            try:
                await self._follow_loop()
            except Exception:  # noqa: BLE001 - the follower must never die
                log.exception("following the server's commands failed; again in %g s", BACKOFF_S[1])
                await anyio.sleep(BACKOFF_S[1])

    async def _follow_loop(self) -> None:
        after = self.queue.command_after
        backoff = BACKOFF_S[0]
        while True:
            try:
                r = await self.client.get(
                    f"/agents/{self.agent_id}/commands",
                    params={"after": after, "wait": POLL_WAIT_S},
                    timeout=POLL_WAIT_S + 15,
                )
            except httpx.HTTPError:
                await anyio.sleep(backoff)
                backoff = min(BACKOFF_S[1], backoff * 2)
                continue
            if r.status_code != 200:
                log.debug("commands: HTTP %s: %s", r.status_code, _error(r))
                await anyio.sleep(refused_wait(r) or backoff)
                backoff = min(BACKOFF_S[1], backoff * 2)
                continue
            backoff = BACKOFF_S[0]
            data = r.json()
            latest = data.get("latest")
            if isinstance(latest, int) and after > latest:
                log.info("the server's commands start again (a new database): following from its first")
                after = 0
                await anyio.to_thread.run_sync(self.queue.set_command_after, after)
            await self._apply_away(data.get("away"))
            for command in data.get("commands") or []:
                try:
                    await self._apply(command)
                except Exception:  # noqa: BLE001 - one command must not stop the others
                    log.exception("command %s failed", command.get("kind"))
                after = max(after, int(command.get("id") or 0))
                await anyio.to_thread.run_sync(self.queue.set_command_after, after)

    async def _apply_away(self, away: Any) -> None:
        if not isinstance(away, dict) or not isinstance(away.get("on"), bool):
            return
        if away["on"] != self.control.away.on:
            await self.control.set_away(away["on"], _actor(away.get("by"), self.options.server))

    async def _apply(self, c: dict[str, Any]) -> None:
        from sessionwatch.control.core import NotPending, UnknownSession

        kind = c.get("kind")
        by = _actor(c.get("by"), self.options.server)
        sid = str(c.get("session_id"))
        try:
            if kind == "approve":
                decision = "allow" if c.get("decision") == "allow" else "deny"
                message = c.get("message") if isinstance(c.get("message"), str) else None
                await self.control.approve(sid, str(c.get("pending_id")), decision, message, by)
                log.info("%s: %s from the server, by %s", sid, decision, by.who)
            elif kind == "budget":
                cap = c.get("max_cost_usd")
                await self.control.set_budget(sid, float(cap) if isinstance(cap, (int, float)) else None, by)
        except (NotPending, UnknownSession) as exc:
            log.info("%s from the server for %s: %s", kind, sid, exc)


def refused_wait(r: httpx.Response) -> float | None:
    """How long a refused token (401/403) or a throttled address (429) waits; None otherwise."""
    if r.status_code == 429:
        try:
            return max(1.0, min(REFUSED_S * 5, float(r.headers.get("retry-after", REFUSED_S))))
        except ValueError:
            return REFUSED_S
    return REFUSED_S if r.status_code in (401, 403) else None


def _error(r: httpx.Response) -> str:
    try:
        data = r.json()
    except ValueError:
        return r.text[:200]
    return str(data.get("error")) if isinstance(data, dict) and "error" in data else r.text[:200]


def engine_db(queue: Path) -> Path:
    """The agent's own engine state, beside its queue."""
    return queue.with_name(queue.stem + "-engine.db")


def run(settings: Any, options: AgentOptions, *, uvicorn_level: str = "info", on_started: Callable[[], None] | None = None) -> int:
    """Run the agent until SIGINT/SIGTERM; the exit status."""
    import uvicorn

    from sessionwatch.server import security
    from sessionwatch.server.app import create_app

    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    app = create_app(settings)
    engine = app.state.engine
    queue = Queue(options.queue)
    agent = Agent(engine, app.state.control, queue, options)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            engine.request_shutdown()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=security.guarded_protocol(security.max_connections(security.raise_fd_limit())),
        log_level=uvicorn_level,
        timeout_graceful_shutdown=3,
        access_log=False,
    )
    server = Server(config)

    async def main() -> None:
        async with anyio.create_task_group() as tg:

            async def serve() -> None:
                await server.serve()
                tg.cancel_scope.cancel()

            tg.start_soon(serve)
            while not engine.ready.is_set():
                if server.should_exit or app.startup_error is not None:
                    return
                await anyio.sleep(0.05)
            log.info("agent %s (%s) pushing to %s", agent.agent_id, agent.host, options.server)
            if on_started is not None:
                on_started()
            tg.start_soon(agent.push_forever)
            tg.start_soon(agent.follow_forever)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        queue.close()
    if app.startup_error is not None:
        import sys

        print(f"sessionwatch: error: {app.startup_error}", file=sys.stderr)
        return 1
    return 0
