"""The Panel dashboard: every session of a sessionwatch server, live.

    sessionwatch dashboard --server-url http://127.0.0.1:8765 --port 5007

It is a client of the server's HTTP API like any other (no database access).
One :class:`Feed` per dashboard process follows ``/stream`` with the same
rules as the web page (``frontend/connection.js``): on an error it reconnects
after 1, 2, 4, 8 and 16 s, then falls back to polling ``/all`` every 3 s while
it keeps trying the stream every 15 s. A rejected token (401/403) shows
"Token rejected" and the stream is tried again every 15 s. Those rules are
:class:`sessionwatch.clients.feed.FeedMachine`, checked against the same test
vectors as the web page (``tests/vectors/feed.json``); the HTTP client, its
errors and the stream follower are the rest of :mod:`sessionwatch.clients`. Each open dashboard tab diffs the feed
against its table and sends only what changed: ``patch`` for changed cells,
``stream`` for new sessions. Tabulator cannot drop single rows, so a removal
rebuilds the table's data once for the whole event; the full table is
otherwise only sent on ``init``/``refresh``, on a snapshot while polling and
when a filter changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import importlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import panel  # imported here so that `sessionwatch dashboard` reports a missing Panel at once

from sessionwatch.clients.feed import Close, Command, FeedMachine, FeedOptions, Open, Poll
from sessionwatch.clients.follow import (
    CONNECT_TIMEOUT_S,
    SILENCE_S,
    Follower,
    StreamEvent,
    apply_event,
    parse_event,
)
from sessionwatch.clients.http import (
    BACKOFF_S,
    ApiError,
    AsyncApi,
    AuthError,
    ClientError,
    ServerUnreachable,
    SyncApi,
    auth_headers,
)
from sessionwatch.model import STATUSES

__all__ = ["STATUS_COLOURS", "Feed", "create_app", "main", "serve_dashboard"]

log = logging.getLogger("sessionwatch.dashboard")

# The web page's timings (frontend/connection.js, DEFAULT_OPTIONS).
POLL_S = 3.0
SSE_RETRY_S = 15.0
REQUEST_TIMEOUT_S = 10.0

#: Status -> (text colour, background), as issue 4 asks: idle green,
#: running yellow, stale red, waiting blue, ended grey.
STATUS_COLOURS: dict[str, tuple[str, str]] = {
    "idle": ("#166534", "#dcfce7"),
    "running": ("#854d0e", "#fef08a"),
    "stale": ("#991b1b", "#fee2e2"),
    "waiting": ("#1e40af", "#dbeafe"),
    "ended": ("#374151", "#e5e7eb"),
}
SOURCES = ("claude", "panel")

#: Connection state -> (label, colour) of the indicator.
CONNECTION_LABELS: dict[str, tuple[str, str]] = {
    "connecting": ("Connecting", "#6b7280"),
    "live": ("Live", "#16a34a"),
    "reconnecting": ("Reconnecting", "#ca8a04"),
    "polling": ("Polling", "#ca8a04"),
    "offline": ("Offline", "#dc2626"),
    "unauthorized": ("Token rejected", "#dc2626"),
}

Session = dict[str, Any]
Listener = Callable[[str], None]


# --------------------------------------------------------------------------
# The feed: one connection to the server per dashboard process
# --------------------------------------------------------------------------


class Feed:
    """The server's sessions, kept current from ``/stream`` (or ``/all``).

    Runs on its own daemon thread. Listeners are called on that thread with
    ``"snapshot"`` (replace everything), ``"changed"`` (some sessions changed)
    or ``"state"`` (the connection state changed); they must only schedule
    work, never block. When to reconnect, poll or give up is decided by
    :class:`~sessionwatch.clients.feed.FeedMachine`, the web page's rules.
    """

    def __init__(
        self,
        server_url: str,
        token: str | None = None,
        *,
        backoff_s: tuple[float, ...] = BACKOFF_S,
        poll_s: float = POLL_S,
        sse_retry_s: float = SSE_RETRY_S,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.token = token
        self.backoff_s = backoff_s
        self.poll_s = poll_s
        self.sse_retry_s = sse_retry_s
        self.state = "connecting"
        self.last_event_id: str | None = None
        self._machine = FeedMachine(
            FeedOptions(
                backoff_s=backoff_s,
                poll_s=poll_s,
                sse_retry_s=sse_retry_s,
                connect_timeout_s=CONNECT_TIMEOUT_S,
                # The token cannot change while the dashboard runs; the
                # server's can: look again now and then.
                auth_retry_s=sse_retry_s,
            )
        )
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._listeners: set[Listener] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._inputs: asyncio.Queue[tuple[str, int, Any]] | None = None
        self._stream_task: asyncio.Task[None] | None = None
        self._stream_number = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def attempt(self) -> int:
        """Reconnect attempts since the stream last opened."""
        return self._machine.attempt

    # -- public, any thread ----------------------------------------------------

    def sessions(self) -> dict[str, Session]:
        with self._lock:
            return dict(self._sessions)

    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.add(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.discard(listener)

    def headers(self) -> dict[str, str]:
        return auth_headers(self.token)

    def start(self) -> Feed:
        if self._thread is None:
            ready = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(ready,), name="sessionwatch-feed", daemon=True
            )
            self._thread.start()
            ready.wait(5)
        return self

    def stop(self) -> None:
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def retry_now(self) -> None:
        """Try the stream now instead of at the next scheduled attempt."""
        loop, inputs = self._loop, self._inputs
        if loop is not None and inputs is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(inputs.put_nowait, ("retry", 0, None))

    # -- the driver of the machine (feed thread) -----------------------------------

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._inputs = asyncio.Queue()
        self._task = loop.create_task(self._main())
        ready.set()
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(self._task)
        loop.close()

    async def _main(self) -> None:
        assert self._inputs is not None
        machine = self._machine
        async with AsyncApi(self.server_url, self.token, timeout_s=REQUEST_TIMEOUT_S) as api:
            follower = Follower(api, connect_timeout_s=CONNECT_TIMEOUT_S, silence_s=SILENCE_S)
            try:
                self._carry_out(machine.start(time.monotonic()), api, follower)
                while True:
                    due = machine.next_due()
                    wait = None if due is None else max(0.0, due - time.monotonic())
                    try:
                        kind, number, value = await asyncio.wait_for(self._inputs.get(), wait)
                    except TimeoutError:
                        self._carry_out(machine.tick(time.monotonic()), api, follower)
                        continue
                    now = time.monotonic()
                    if kind == "retry":
                        commands = machine.retry_now(now)
                    elif kind == "poll":
                        answer, body = value
                        if answer == "ok" and machine.wants_poll(number):
                            if body.get("last_event_id") is not None:
                                self.last_event_id = str(body["last_event_id"])
                            self._replace(body.get("sessions", []))
                        commands = machine.poll_answered(now, number, answer)
                    elif number != self._stream_number:
                        continue  # from a stream attempt the machine dropped
                    elif kind == "opened":
                        commands = machine.opened(now)
                    elif kind == "rejected":
                        commands = machine.rejected(now)
                    else:
                        commands = machine.failed(now)
                    self._carry_out(commands, api, follower)
            finally:
                self._close_stream()
                for task in list(self._tasks):
                    task.cancel()

    def _carry_out(self, commands: list[Command], api: AsyncApi, follower: Follower) -> None:
        for command in commands:
            if isinstance(command, Open):
                self._close_stream()
                self._stream_task = self._spawn(self._follow(follower, self._stream_number))
            elif isinstance(command, Close):
                self._close_stream()
            elif isinstance(command, Poll):
                self._spawn(self._poll(api, command.number))
            else:
                self._set_state(command.state, command.forced)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _close_stream(self) -> None:
        self._stream_number += 1
        if self._stream_task is not None:
            self._stream_task.cancel()
            self._stream_task = None

    def _input(self, kind: str, number: int, value: Any = None) -> None:
        assert self._inputs is not None
        self._inputs.put_nowait((kind, number, value))

    async def _follow(self, follower: Follower, number: int) -> None:
        """One stream attempt; tells the machine how it went."""
        follower.last_event_id = self.last_event_id  # a poll may have moved it
        try:
            await follower.follow(self._apply_event, lambda: self._input("opened", number))
        except AuthError as error:
            log.warning("%s", error)
            self._input("rejected", number)
        except ClientError as error:
            log.debug("stream failed: %s", error)
            self._input("failed", number)

    async def _poll(self, api: AsyncApi, number: int) -> None:
        try:
            body = await api.get_json("/all")
        except AuthError:
            self._input("poll", number, ("auth", None))
        except ClientError:
            self._input("poll", number, ("error", None))
        else:
            self._input("poll", number, ("ok", body if isinstance(body, dict) else {}))

    def _on_event(self, event: str, event_id: str, data: str) -> None:
        """One raw stream event (what the follower hands over, parsed)."""
        parsed = parse_event(event, event_id, data)
        if parsed is not None:
            self._apply_event(parsed)

    def _apply_event(self, event: StreamEvent) -> None:
        if event.id:
            self.last_event_id = event.id
        with self._lock:
            replaced = apply_event(self._sessions, event)
        self._notify("snapshot" if replaced else "changed")

    def _replace(self, sessions: Iterable[Session]) -> None:
        with self._lock:
            self._sessions = {str(s.get("id")): s for s in sessions}
        self._notify("snapshot")

    def _set_state(self, state: str, force: bool = False) -> None:
        if state != self.state or force:
            self.state = state
            self._notify("state")

    def _notify(self, what: str) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(what)
            except Exception:
                log.exception("dashboard listener failed")


# --------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------

COLUMNS = (
    "source",
    "project",
    "status",
    "task",
    "user",
    "host",
    "last_activity",
    "duration",
    "messages",
    "tools",
    "tokens",
    "cost",
    "kill",
)
KILL_BUTTON = '<button class="sw-kill" title="Kill this Panel session">Kill</button>'
KILL_PENDING = '<span class="sw-killing">killing…</span>'


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _clock(iso: Any) -> str:
    """ISO 8601 UTC -> local HH:MM:SS (the date when not today)."""
    if not iso:
        return ""
    try:
        moment = datetime.fromisoformat(str(iso)).astimezone()  # 3.11 reads "Z"
    except ValueError:
        return str(iso)
    if moment.date() == datetime.now().astimezone().date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M")


def _duration(seconds: Any) -> str:
    try:
        total = int(float(seconds))
    except (TypeError, ValueError):
        return ""
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def session_row(session: Session) -> dict[str, Any]:
    """One table row (every column a plain str/int/float) for a Session."""
    tokens = session.get("tokens") or {}
    total_tokens = sum(int(v or 0) for v in tokens.values()) if isinstance(tokens, dict) else 0
    cost = session.get("cost_usd")
    panel = session.get("source") == "panel"
    if panel:
        kill = KILL_PENDING if session.get("kill_requested") else KILL_BUTTON
    else:
        kill = ""
    return {
        "source": _text(session.get("source")),
        "project": _text(session.get("project")),
        "status": _text(session.get("status")),
        "task": _text(session.get("current_task") or session.get("title")),
        "user": _text(session.get("user")),
        "host": _text(session.get("host")),
        "last_activity": _clock(session.get("last_activity")),
        "duration": _duration(session.get("duration_seconds")),
        "messages": int(session.get("message_count") or 0),
        "tools": int(session.get("tool_calls") or 0),
        "tokens": total_tokens,
        "cost": "" if cost is None else f"${float(cost):.2f}",
        "kill": kill,
    }


@dataclass(frozen=True)
class Filters:
    sources: tuple[str, ...] = SOURCES
    statuses: tuple[str, ...] = STATUSES
    text: str = ""

    def match(self, sid: str, session: Session) -> bool:
        if session.get("source") not in self.sources:
            return False
        if session.get("status") not in self.statuses:
            return False
        return search_matches(session, self.text)


#: What the search box looks at, as the web page's (frontend/view.js, matches()).
SEARCHED_FIELDS = ("project", "title", "git_branch", "current_task")


def search_matches(session: Session, query: str) -> bool:
    """Whether every word of `query` (any case) is in one of the session's
    searched fields; tests/vectors/search.json is shared with the web page."""
    words = query.lower().split()
    haystack = "\n".join(
        value.lower() for key in SEARCHED_FIELDS if isinstance(value := session.get(key), str)
    )
    return all(word in haystack for word in words)


@dataclass
class Diff:
    """How to bring a table from `old` rows to `new` rows."""

    patch: dict[str, list[tuple[str, Any]]]
    add: dict[str, dict[str, Any]]
    remove: list[str]


def diff_rows(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> Diff:
    patch: dict[str, list[tuple[str, Any]]] = {}
    for sid, row in new.items():
        before = old.get(sid)
        if before is None:
            continue
        for column, value in row.items():
            if before.get(column) != value:
                patch.setdefault(column, []).append((sid, value))
    add = {sid: row for sid, row in new.items() if sid not in old}
    remove = [sid for sid in old if sid not in new]
    return Diff(patch, add, remove)


# --------------------------------------------------------------------------
# The Panel app
# --------------------------------------------------------------------------


def _status_formatter() -> Any:
    from bokeh.models.widgets.tables import HTMLTemplateFormatter

    cases = " : ".join(
        f"value == '{status}' ? 'color:{fg};background:{bg}'"
        for status, (fg, bg) in STATUS_COLOURS.items()
    )
    return HTMLTemplateFormatter(
        template=(
            # <%- %> escapes: a value is shown as text, never as markup.
            '<span class="sw-status sw-status-<%- value %>" style="padding:1px 8px;'
            f"border-radius:9px;font-weight:600;<%= {cases} : '' %>\"><%- value %></span>"
        )
    )


CSS = """
.sw-kill { cursor: pointer; border: 1px solid #b91c1c; color: #b91c1c; background: #fff;
           border-radius: 4px; padding: 0 8px; }
.sw-kill:hover { background: #fee2e2; }
.sw-killing { color: #6b7280; font-style: italic; }
"""


def _panel() -> Any:
    # Most of Panel's constructors are untyped; use the module as Any rather
    # than scatter ignores over every widget.
    return panel


class DashboardView:
    """One browser tab of the dashboard."""

    def __init__(self, feed: Feed, server_url: str, token: str | None) -> None:
        pn = _panel()
        pd: Any = importlib.import_module("pandas")  # pandas ships no type stubs
        self._pd = pd
        self.feed = feed
        self.server_url = server_url.rstrip("/")
        self.token = token
        self.doc = pn.state.curdoc
        self.rows: dict[str, dict[str, Any]] = {}
        self.filters = Filters()
        self._pending = False
        self._pending_lock = threading.Lock()
        self._full = True
        self._target: str | None = None
        self._labels: dict[str, int] = {}
        self._next_label = itertools.count()

        self.table = pn.widgets.Tabulator(
            self._frame({}),
            show_index=False,
            disabled=True,
            selectable=False,
            sizing_mode="stretch_width",
            height=520,
            layout="fit_data_stretch",
            formatters={"status": _status_formatter(), "kill": {"type": "html"}},
            titles={"last_activity": "last activity", "kill": ""},
            widths={"task": 420, "project": 260},
            hidden_columns=["id"],
            header_align="left",
            stylesheets=[CSS],
        )
        self.table.on_click(self._on_click)
        self.connection = pn.pane.HTML("", name="connection", margin=(12, 10))
        self.summary = pn.pane.Markdown("", name="summary", margin=(4, 10))
        self.source_filter = pn.widgets.CheckButtonGroup(
            label="Source", options=list(SOURCES), value=list(SOURCES)
        )
        self.status_filter = pn.widgets.MultiChoice(
            label="Status", options=list(STATUSES), value=list(STATUSES), width=360
        )
        self.text_filter = pn.widgets.TextInput(
            label="Search", placeholder="project, title, branch, task…", width=260
        )
        for widget in (self.source_filter, self.status_filter):
            widget.param.watch(self._on_filter, "value")
        self.text_filter.param.watch(self._on_filter, "value_input")
        self.retry = pn.widgets.Button(label="Reconnect now", color="light", visible=False)
        self.retry.on_click(lambda event: self.feed.retry_now())

        # Session fields are anyone's text (an app name, a user): HTML panes
        # with every field escaped, never Markdown, where `![x](url)` in an
        # app name made the browser fetch the image and `[u](url)` a link.
        self.confirm_text = pn.pane.HTML("", margin=(8, 10))
        self.confirm_kill = pn.widgets.Button(label="Kill session", color="danger")
        self.cancel_kill = pn.widgets.Button(label="Cancel", color="default")
        self.confirm_kill.on_click(self._on_confirm)
        self.cancel_kill.on_click(lambda event: self._close_confirm())
        # A modal, not a bar that shows and hides above the table: a layout
        # change re-renders the Tabulator, and a data update that lands
        # while it rebuilds is dropped by Panel's Tabulator view.
        self.confirm = pn.layout.Modal(
            pn.pane.Markdown("### Kill this session?", margin=(0, 10)),
            self.confirm_text,
            pn.Row(self.confirm_kill, self.cancel_kill),
            open=False,
            show_close_button=True,
        )
        # Fixed height: a message appearing must not move the table (see above).
        self.message = pn.pane.HTML("", height=28, margin=(0, 10))

        self.layout = pn.Column(
            pn.Row(
                pn.pane.Markdown("## sessionwatch", margin=(0, 10)),
                self.connection,
                self.retry,
                self.summary,
            ),
            pn.Row(self.source_filter, self.status_filter, self.text_filter),
            self.confirm,
            self.message,
            self.table,
            sizing_mode="stretch_width",
            stylesheets=[CSS],
        )
        self._show_connection()
        self.feed.subscribe(self._on_feed)
        if self.doc is not None and self.doc.session_context is not None:
            pn.state.on_session_destroyed(self._on_destroyed)
        self._apply()

    # -- feed -> table ---------------------------------------------------------

    def _frame(self, rows: dict[str, dict[str, Any]]) -> Any:
        """A DataFrame of `rows`, indexed by each row's stable integer label.

        Tabulator's `stream` needs a numeric index, so session ids live in a
        hidden `id` column and `_labels` maps them to index labels for
        `patch`.
        """
        pd = self._pd
        for sid in rows:
            if sid not in self._labels:
                self._labels[sid] = next(self._next_label)
        data = {"id": list(rows)} | {c: [row[c] for row in rows.values()] for c in COLUMNS}
        index = pd.Index([self._labels[sid] for sid in rows], dtype="int64")
        return pd.DataFrame(data, index=index, dtype=object)

    def _replace_table(self, rows: dict[str, dict[str, Any]]) -> None:
        """Send the whole table (init/refresh, filters, removals only)."""
        self._labels = {sid: label for sid, label in self._labels.items() if sid in rows}
        self.rows = rows
        self.table.value = self._frame(rows)

    def _on_feed(self, what: str) -> None:
        """Feed thread: schedule one update of this tab (coalesced)."""
        if what == "snapshot":
            self._full = True
        with self._pending_lock:
            if self._pending:
                return
            self._pending = True
        self._schedule(self._apply_scheduled)

    def _schedule(self, callback: Callable[[], None]) -> None:
        if self.doc is None or self.doc.session_context is None:
            callback()  # not served (tests, notebooks): apply at once
            return
        from panel.io.state import set_curdoc

        # Through Panel, not bokeh's add_next_tick_callback alone: Panel runs
        # the callback with this document as `curdoc`, so the table's
        # updates are sent at once and in order. Without it Panel defers
        # them to later ticks, and a deferred older update could land after
        # a newer one made in a widget callback (a filter change).
        try:
            with set_curdoc(self.doc):
                panel.state.execute(callback, schedule=True)
        except Exception:
            log.exception("could not schedule a dashboard update")
            with self._pending_lock:
                self._pending = False

    def _apply_scheduled(self) -> None:
        with self._pending_lock:
            self._pending = False
        self._apply()

    def _apply(self) -> None:
        self._show_connection()
        sessions = self.feed.sessions()
        wanted = {
            sid: session_row(s) for sid, s in sessions.items() if self.filters.match(sid, s)
        }
        if self._full:
            self._full = False
            log.debug("tab %x: whole table, %d rows", id(self), len(wanted))
            self._replace_table(wanted)
        else:
            diff = diff_rows(self.rows, wanted)
            log.debug(
                "tab %x update: %d patched cells, %d new, %d removed",
                id(self),
                sum(len(v) for v in diff.patch.values()),
                len(diff.add),
                len(diff.remove),
            )
            if diff.remove:
                # Tabulator has no row removal: drop them from the data once.
                self._replace_table(
                    {sid: row for sid, row in self.rows.items() if sid not in diff.remove}
                )
            if diff.patch:
                labelled = {
                    column: [(self._labels[sid], value) for sid, value in changes]
                    for column, changes in diff.patch.items()
                }
                self.table.patch(labelled, as_index=True)
                for column, changes in diff.patch.items():
                    for sid, value in changes:
                        self.rows[sid][column] = value
            if diff.add:
                self.table.stream(self._frame(diff.add), reset_index=False, follow=False)
                self.rows.update(diff.add)
        running = sum(1 for s in sessions.values() if s.get("status") == "running")
        shown = len(self.rows)
        self.summary.object = (
            f"**{len(sessions)}** sessions · **{running}** running"
            + (f" · {shown} shown" if shown != len(sessions) else "")
        )
        if self._target is not None and self._target not in sessions:
            self._close_confirm()

    def _show_connection(self) -> None:
        label, colour = CONNECTION_LABELS.get(self.feed.state, (self.feed.state, "#6b7280"))
        detail = ""
        if self.feed.state == "reconnecting":
            detail = f" (attempt {self.feed.attempt} of {len(self.feed.backoff_s)})"
        self.connection.object = (
            f'<span class="sw-connection sw-connection-{html.escape(self.feed.state)}" '
            f'style="color:{colour};font-weight:600">● {label}</span>{html.escape(detail)}'
        )
        self.retry.visible = self.feed.state not in ("live", "connecting")

    def _on_filter(self, *events: Any) -> None:
        self.filters = Filters(
            sources=tuple(self.source_filter.value),
            statuses=tuple(self.status_filter.value),
            text=self.text_filter.value_input or "",
        )
        self._full = True
        self._apply()

    def _on_destroyed(self, session_context: Any) -> None:
        self.feed.unsubscribe(self._on_feed)

    # -- kill -------------------------------------------------------------------

    def _on_click(self, event: Any) -> None:
        if event.column != "kill":
            return
        try:
            sid = str(self.table.value["id"].iloc[event.row])
        except (IndexError, KeyError, TypeError):
            return
        session = self.feed.sessions().get(sid)
        if session is None or session.get("source") != "panel" or session.get("kill_requested"):
            return
        self._target = sid
        user = session.get("user")
        self.confirm_text.object = (
            f"Kill Panel session <code>{html.escape(sid[:12])}</code> of "
            f"<b>{html.escape(_text(session.get('project')))}</b>"
            f"{' (user ' + html.escape(_text(user)) + ')' if user else ''}?"
            " Its browser tab is disconnected."
        )
        self.confirm.open = True

    def _close_confirm(self) -> None:
        self._target = None
        self.confirm.open = False

    def _on_confirm(self, event: Any) -> None:
        sid = self._target
        self._close_confirm()
        if sid is None:
            return
        # The request runs on a thread, not in an async callback: Panel holds
        # the document for the whole of an async callback, and bokeh's hold
        # combines a later table update into an earlier one, reordering
        # them (a removed row came back). Callbacks must stay short.
        threading.Thread(target=self._request_kill, args=(sid,), daemon=True).start()

    def _request_kill(self, sid: str) -> None:
        try:
            with SyncApi(self.server_url, self.token, timeout_s=REQUEST_TIMEOUT_S) as api:
                api.request("POST", f"/sessions/{sid}/kill", json={"by": "panel-dashboard"})
        except AuthError:
            self._say("Kill failed: the server rejected the token.")
        except ServerUnreachable as error:
            self._say(f"Kill failed: the server did not answer ({html.escape(str(error))}).")
        except ApiError as error:
            self._say(f"Kill failed: {html.escape(error.sentence)}")
        else:
            self._say(f"Kill requested for <code>{html.escape(sid[:12])}</code>.")

    def _say(self, text: str) -> None:
        """Show ``text``, HTML in which every outside value is escaped."""

        def show() -> None:
            self.message.object = text

        self._schedule(show)


def create_app(feed: Feed, server_url: str, token: str | None = None) -> Any:
    """Build one dashboard tab (call inside a Panel session)."""
    return DashboardView(feed, server_url, token).layout


def serve_dashboard(
    server_url: str,
    port: int,
    token: str | None = None,
    show: bool = False,
    *,
    address: str = "127.0.0.1",
    threaded: bool = False,
) -> Any:
    """Serve the dashboard on `port` (blocking unless `threaded`).

    Returns the Panel server (or its thread when `threaded`).
    """
    pn = _panel()

    pn.extension("tabulator", notifications=True)
    feed = Feed(server_url, token).start()
    origins = [f"127.0.0.1:{port}", f"localhost:{port}"]
    if address not in ("127.0.0.1", "localhost", "0.0.0.0", "::"):
        origins.append(f"{address}:{port}")
    try:
        return pn.serve(
            {"/": lambda: create_app(feed, server_url, token)},
            port=port,
            address=address,
            websocket_origin=origins,
            show=show,
            title="sessionwatch",
            threaded=threaded,
            verbose=False,
        )
    finally:
        if not threaded:
            feed.stop()


def main(server_url: str, port: int, token: str | None) -> None:
    """`sessionwatch dashboard`: serve until Ctrl-C."""
    print(f"sessionwatch dashboard for {server_url} at http://127.0.0.1:{port}/", flush=True)
    started = time.monotonic()
    with contextlib.suppress(KeyboardInterrupt):
        serve_dashboard(server_url, port, token)
    log.debug("dashboard ran %.0f s", time.monotonic() - started)
