"""Replicas (PostgreSQL): an action is carried out by the replica that holds
its target, whichever replica the request reached.

Any replica serves any client (nginx round robin, ``deploy/nginx.conf``), but
some things live in one replica's process:

- a held PermissionRequest waits in the ``POST /hooks`` request that brought
  it (control/core.py); the table ``holds`` says which replica holds it;
- a managed session's Claude Code process is a child of the replica that
  started or resumed it, and a ``sessionwatch run``'s reports are taken by one
  replica (managed/); the table ``owners`` says which.

An approval, a message, an interrupt, a stop, a resume, a delete or a run's
report that reaches another replica is relayed (:meth:`Relay.ask`):

1. the replica asked inserts a row into ``relay`` (the target replica, the
   kind of action, its body with who asked) and NOTIFYs the target;
2. the target takes its rows (``UPDATE ... WHERE claimed_at IS NULL``: each
   once), runs the handler registered for the kind, and writes the answer's
   HTTP status and body, with a NOTIFY back;
3. the replica asked answers its client with that status and body, as if it
   had acted itself.

A target that does not take the row within :data:`CLAIM_S` is gone (a live
replica takes it within milliseconds, or at its next poll every
:data:`POLL_S`): :class:`Gone` lets the caller take the target over (a
stopped session, a run) or answer 503. One taken but not answered within
:data:`ANSWER_S` is 504. A replica is known by its event log's ``origin``
(random per run), so a restarted replica is a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import orjson

from sessionwatch.errors import ApiError
from sessionwatch.store.base import Actor
from sessionwatch.store.postgres import RELAY_CHANNEL, RELAY_DONE_CHANNEL

if TYPE_CHECKING:
    from sessionwatch.engine import Engine
    from sessionwatch.store.postgres import PgStore

log = logging.getLogger(__name__)

#: How long a live replica may take to take a relayed action.
CLAIM_S: Final = 3.0
#: How long the action itself may take there (a stop waits for the process).
ANSWER_S: Final = 30.0
#: How often a replica looks for actions relayed to it without a NOTIFY, and
#: the asker for an answer (a notification can be lost with its connection).
POLL_S: Final = 1.0
#: Relayed rows are deleted once answered; older leftovers (an asker gone) after this.
KEEP_S: Final = 3600.0

Handler = Callable[[dict[str, Any], Actor], Awaitable[Any]]


class Gone(Exception):  # noqa: N818 - it says what happened to the target
    """The replica that holds the target did not take the action: it is gone."""

    def __init__(self, target: int) -> None:
        super().__init__(f"replica {target} did not answer")
        self.target = target


def actor_of(data: Any) -> Actor:
    if not isinstance(data, dict) or not isinstance(data.get("who"), str):
        return Actor("unknown")
    return Actor(data["who"], data.get("address"), data.get("origin"), data.get("user_agent"))


class Relay:
    """This replica's side of relayed actions (see the module's docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.handlers: dict[str, Handler] = {}
        self._answers: dict[int, asyncio.Future[None]] = {}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def on(self) -> bool:
        """Whether other replicas share this server's database."""
        return self.engine.replicas is not None

    @property
    def store(self) -> PgStore:
        store = self.engine.replicas
        assert store is not None, "relay used without replicas"
        return store

    @property
    def me(self) -> int:
        """This replica (its event log's origin)."""
        origin: int = getattr(self.engine.log, "origin", 0)
        return origin

    def handle(self, kind: str, handler: Handler) -> None:
        """Run ``handler(body, who)`` for actions of ``kind`` relayed here;
        its result is the answer's JSON body, an :class:`ApiError` its status."""
        self.handlers[kind] = handler

    # --- this replica asks ------------------------------------------------------------------

    async def ask(self, target: int, kind: str, body: dict[str, Any], by: Actor) -> Any:
        """Have replica ``target`` carry out ``kind``: its answer's body, or
        the :class:`ApiError` it answered with; :class:`Gone` if it did not
        take the action (nothing was done)."""
        store, clock = self.store, self.engine.clock
        payload = orjson.dumps({"body": body, "by": by.to_json()})
        rid = await store.relay_put(target, self.me, kind, payload, clock.now())
        done = self._answers[rid] = asyncio.get_running_loop().create_future()
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            claimed = False
            while True:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(done), POLL_S)
                claimed, status, answer = await store.relay_state(rid)
                if status is not None:
                    return _result(status, answer)
                waited = loop.time() - start
                if not claimed and waited >= CLAIM_S and await store.relay_forget(rid, unless_claimed=True):
                    raise Gone(target)
                if waited >= ANSWER_S:
                    raise ApiError(504, f"the replica holding this session took more than {ANSWER_S:g} s to answer")
        finally:
            self._answers.pop(rid, None)
            with contextlib.suppress(Exception):
                await store.relay_forget(rid)

    def _answered(self, payload: str) -> None:
        asker, _, rid = payload.partition(":")
        if asker == str(self.me) and rid.isdigit():
            fut = self._answers.get(int(rid))
            if fut is not None and not fut.done():
                fut.set_result(None)

    # --- other replicas ask this one -----------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled: take the actions relayed here and carry them out."""
        if not self.on:
            return
        store = self.store
        me = str(self.me)

        def relayed(payload: str) -> None:
            if payload == me:
                self._wake.set()

        await store.subscribe(RELAY_CHANNEL, relayed)
        await store.subscribe(RELAY_DONE_CHANNEL, self._answered)
        trimmed = 0.0
        try:
            while True:
                try:
                    now = self.engine.clock.now()
                    for rid, asker, kind, body in await store.relay_claim(self.me, now):
                        task = asyncio.get_running_loop().create_task(self._serve(rid, asker, kind, body))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                    if now - trimmed > KEEP_S / 6 and await self.engine.leading():
                        trimmed = now
                        await store.trim_relay(now - KEEP_S)
                except Exception:  # noqa: BLE001 - the next round may do better
                    log.warning("taking relayed actions failed", exc_info=True)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_S)
                self._wake.clear()
        finally:
            for task in list(self._tasks):  # shutting down: the askers time out and say so
                task.cancel()

    async def _serve(self, rid: int, asker: int, kind: str, raw: bytes) -> None:
        status, answer = 200, b"null"
        try:
            data = orjson.loads(raw)
            handler = self.handlers.get(kind)
            if handler is None:
                raise ApiError(501, f"this replica cannot carry out {kind!r} (an older version?)")
            result = await handler(data.get("body") or {}, actor_of(data.get("by")))
            answer = orjson.dumps(result)
        except ApiError as exc:
            status, answer = exc.status, orjson.dumps({"error": exc.sentence})
        except Exception as exc:  # noqa: BLE001 - the asker gets a sentence, the log the traceback
            log.exception("a relayed %s failed", kind)
            status, answer = 502, orjson.dumps({"error": f"the replica holding this session failed to carry it out: {type(exc).__name__}"})
        try:
            await self.store.relay_answer(rid, asker, status, answer)
        except Exception:  # noqa: BLE001 - the asker times out and says so
            log.warning("could not answer a relayed %s", kind, exc_info=True)


def _result(status: int, answer: bytes | None) -> Any:
    body = orjson.loads(answer) if answer else None
    if 200 <= status < 300:
        return body
    sentence = body.get("error") if isinstance(body, dict) else None
    raise ApiError(status, sentence if isinstance(sentence, str) else f"the replica holding this session answered {status}")
