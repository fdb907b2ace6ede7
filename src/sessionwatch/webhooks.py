"""``--webhook URL``: one POST per session transition a person wants to hear about.

The hub tells :meth:`Webhooks.observe` of every session an event creates or
changes (``Hub.listeners``), as the event is applied. :func:`transitions`
picks out the five that matter:

- ``needs_approval``: the session starts waiting for a permission prompt;
- ``waiting``: a turn ended (``running`` → ``waiting``);
- ``failed`` / ``ended``: the session failed (StopFailure) or ended;
- ``budget_reached``: ``status_reason`` became "budget reached ...".

Every other update (a new token count, a title, a heartbeat) sends nothing.
A session first seen already in ``needs_approval`` or ``failed`` sends that;
one first seen ``ended`` or ``waiting`` sends nothing (a restart reading old
transcripts must not announce them all).

Each URL has its own bounded queue and its own sending task: a slow or dead
receiver delays nothing but its own later messages, and never the server
(``observe`` only encodes a small body and puts it in the queue; when the
queue is full the message is dropped and counted). A POST has a timeout; a
failed one (no connection, timeout, a 5xx or 429 answer) is tried again
after 1, 2, 4 s, then given up; any other non-2xx answer is not tried
again. Failures are counted in
``sessionwatch_webhook_failures{reason}`` and logged once per URL until a
message gets through again.

The body (README, "Exact status with hooks")::

    {"event": "needs_approval", "session_id": "...", "source": "claude",
     "title": "...", "project": "...", "host": "...", "status": "needs_approval",
     "status_reason": "...", "pending": {"tool": "Write", "summary": "...", "since": "..."},
     "cost_usd": 0.12, "url": "http://127.0.0.1:8765/?session=...", "timestamp": "...Z"}
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec

from sessionwatch.model import Session, encode, iso

if TYPE_CHECKING:
    import httpx

    from sessionwatch.metrics import Metrics

log = logging.getLogger(__name__)

#: The events a webhook receives, in README's order.
EVENTS: Final = ("needs_approval", "waiting", "failed", "ended", "budget_reached")
QUEUE_SIZE: Final = 1000
TIMEOUT_S: Final = 5.0
#: seconds before each retry (three retries, then the message is given up)
BACKOFF_S: Final[tuple[float, ...]] = (1.0, 2.0, 4.0)
BUDGET_REASON: Final = "budget reached"


def _reason(session: Session | None) -> str:
    value = getattr(session, "status_reason", None) if session is not None else None
    return value if isinstance(value, str) else ""


def transitions(old: Session | None, new: Session) -> list[str]:
    """The webhook events the change ``old`` → ``new`` makes (usually none)."""
    kinds: list[str] = []
    before = old.status if old is not None else None
    if new.status != before:
        if new.status in ("needs_approval", "failed"):
            kinds.append(new.status)
        elif new.status == "ended" and old is not None:
            kinds.append("ended")
        elif new.status == "waiting" and before == "running":
            kinds.append("waiting")
    if BUDGET_REASON in _reason(new).lower() and BUDGET_REASON not in _reason(old).lower():
        kinds.append("budget_reached")
    return kinds


def _pending(session: Session) -> dict[str, Any] | None:
    pending = getattr(session, "pending", None)
    if pending is None:
        return None
    data = msgspec.to_builtins(pending)
    if not isinstance(data, dict):
        return None
    return {k: data.get(k) for k in ("tool", "summary", "since")}


def body(kind: str, session: Session, dashboard: str, now: float) -> dict[str, Any]:
    """The JSON a webhook receives for ``kind`` (README, "Exact status with hooks")."""
    return {
        "event": kind,
        "session_id": session.id,
        "source": session.source,
        "title": session.title,
        "project": session.project,
        "host": session.host,
        "status": session.status,
        "status_reason": getattr(session, "status_reason", None),
        "pending": _pending(session),
        "cost_usd": session.cost_usd,
        "url": f"{dashboard.rstrip('/')}/?session={urllib.parse.quote(session.id, safe='')}",
        "timestamp": iso(now),
    }


class _Target:
    def __init__(self, url: str, size: int) -> None:
        self.url = url
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(size)
        #: failing since the last message that got through (logged once)
        self.failing = False


class Webhooks:
    """The webhooks of one server: ``observe`` as a hub listener, ``run`` as a task."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        dashboard: str,
        metrics: Metrics | None = None,
        queue_size: int = QUEUE_SIZE,
        timeout_s: float = TIMEOUT_S,
        backoff_s: Sequence[float] = BACKOFF_S,
        clock: Any = time.time,
    ) -> None:
        self.targets = [_Target(url, queue_size) for url in urls]
        self.dashboard = dashboard
        self.timeout_s = timeout_s
        self.backoff_s = tuple(backoff_s)
        self.clock = clock
        self.sent = 0
        self.failures: dict[str, int] = {}
        self._metric = None
        if metrics is not None:
            from prometheus_client import Counter

            self._metric = Counter(
                "sessionwatch_webhook_failures",
                "Webhook POSTs that failed (error: one attempt; gave_up: after the retries; "
                "rejected: a 3xx/4xx answer, not retried; queue_full: dropped before sending)",
                ["reason"],
                registry=metrics.registry,
            )

    # --- the hub's side: synchronous, quick ------------------------------------------

    def observe(self, old: Session | None, new: Session) -> None:
        kinds = transitions(old, new)
        if not kinds:
            return
        now = self.clock()
        for kind in kinds:
            data = encode(body(kind, new, self.dashboard, now))
            for target in self.targets:
                try:
                    target.queue.put_nowait(data)
                except asyncio.QueueFull:
                    self._fail(target, "queue_full", "its queue is full; messages are dropped")

    # --- the sending side: one task per URL ------------------------------------------

    async def run(self) -> None:
        import httpx

        async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as client:
            async with asyncio.TaskGroup() as tg:
                for target in self.targets:
                    tg.create_task(self._send_all(client, target))

    async def _send_all(self, client: httpx.AsyncClient, target: _Target) -> None:
        while True:
            data = await target.queue.get()
            for attempt in range(len(self.backoff_s) + 1):
                error, again = await self._post(client, target.url, data)
                if error is None:
                    self.sent += 1
                    if target.failing:
                        target.failing = False
                        log.info("webhook %s: delivering again", target.url)
                    break
                self._fail(target, "error" if again else "rejected", error)
                if not again:
                    break
                if attempt < len(self.backoff_s):
                    await asyncio.sleep(self.backoff_s[attempt])
            else:
                self._count("gave_up")

    async def _post(self, client: httpx.AsyncClient, url: str, data: bytes) -> tuple[str | None, bool]:
        """(None, _) when the receiver took the message, else (why not in a few words, worth retrying)."""
        import httpx

        try:
            resp = await client.post(
                url, content=data, headers={"Content-Type": "application/json", "User-Agent": "sessionwatch-webhook"}
            )
        except httpx.TimeoutException:
            return f"no answer within {self.timeout_s:g} s", True
        except httpx.HTTPError as exc:
            return (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__), True
        if resp.status_code >= 500 or resp.status_code == 429:
            return f"answered {resp.status_code}", True
        if resp.status_code >= 300:
            return f"answered {resp.status_code} (not sent again)", False
        return None, False

    def _fail(self, target: _Target, reason: str, what: str) -> None:
        self._count(reason)
        if not target.failing:
            target.failing = True
            log.warning("webhook %s failed: %s (logged once until a message gets through again)", target.url, what)

    def _count(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1
        if self._metric is not None:
            self._metric.labels(reason).inc()


def dashboard_url(host: str, port: int) -> str:
    """The server's own address for links: the bind address, or this machine's name for a wildcard."""
    if host in ("0.0.0.0", "::", ""):
        import socket

        host = socket.gethostname()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"
