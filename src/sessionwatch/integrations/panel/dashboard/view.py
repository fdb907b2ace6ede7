"""One browser tab of the dashboard: its widgets and how the feed reaches them.

Each tab diffs the feed against its table and sends only what changed:
``patch`` for changed cells, ``stream`` for new sessions. Tabulator cannot
drop single rows, so a removal rebuilds the table's data once for the whole
event; the full table is otherwise only sent on ``init``/``refresh``, on a
snapshot while polling and when a filter changes. Panel's insides (the
current document, scheduling on it) are reached through
:mod:`sessionwatch.integrations.panel.bokeh_compat`.
"""

from __future__ import annotations

import html
import importlib
import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

import panel

from sessionwatch.access import ROLES, allows
from sessionwatch.clients import ApiError, AuthError, ClientError, ServerUnreachable, SyncApi
from sessionwatch.clients.control import Decision, approve, get_away, set_away
from sessionwatch.integrations.panel import bokeh_compat
from sessionwatch.integrations.panel.dashboard.feed import REQUEST_TIMEOUT_S, Feed
from sessionwatch.integrations.panel.dashboard.rows import COLUMNS, SOURCES, STATUS_COLOURS, STATUSES
from sessionwatch.integrations.panel.dashboard.rows import Filters, can_approve, diff_rows, session_row, text

__all__ = ["CONNECTION_LABELS", "CSS", "DashboardView"]

log = logging.getLogger("sessionwatch.dashboard")
#: The Host menu's first choice.
ALL_HOSTS = "All hosts"

#: Connection state -> (label, colour) of the indicator.
CONNECTION_LABELS: dict[str, tuple[str, str]] = {
    "connecting": ("Connecting", "#6b7280"),
    "live": ("Live", "#16a34a"),
    "reconnecting": ("Reconnecting", "#ca8a04"),
    "polling": ("Polling", "#ca8a04"),
    "offline": ("Offline", "#dc2626"),
    "unauthorized": ("Token rejected", "#dc2626"),
}


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
.sw-approve, .sw-deny { cursor: pointer; background: #fff; border-radius: 4px; padding: 0 8px; }
.sw-approve { border: 1px solid #15803d; color: #15803d; }
.sw-deny { border: 1px solid #b91c1c; color: #b91c1c; }
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
        self.doc = bokeh_compat.current_document()
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
            formatters={
                "status": _status_formatter(),
                "kill": {"type": "html"},
                "approve": {"type": "html"},
                "deny": {"type": "html"},
            },
            titles={"last_activity": "last activity", "kill": "", "approve": "", "deny": ""},
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
        #: one machine's sessions (agents report many); options follow the hosts sessions name
        self.host_filter = pn.widgets.Select(label="Host", options={ALL_HOSTS: ""}, value="", width=180)
        for widget in (self.source_filter, self.status_filter, self.host_filter):
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
        # Away mode (GET / PUT /away) and the deny dialog (an optional message for Claude Code).
        self.away = pn.widgets.Switch(label="Away", value=False, margin=(18, 4, 0, 10))
        self.away_label = pn.pane.HTML("Away", margin=(12, 10))
        self._away_from_server = False
        self.away.param.watch(self._on_away, "value")
        self._deny_target: tuple[str, str, str] | None = None
        self.deny_text = pn.pane.HTML("", margin=(8, 10))
        self.deny_message = pn.widgets.TextInput(
            label="Message for Claude Code (optional)", placeholder="why not", width=360
        )
        self.confirm_deny = pn.widgets.Button(label="Deny", color="danger")
        self.cancel_deny = pn.widgets.Button(label="Cancel", color="default")
        self.confirm_deny.on_click(self._on_confirm_deny)
        self.cancel_deny.on_click(lambda event: self._close_deny())
        self.deny = pn.layout.Modal(
            pn.pane.Markdown("### Deny this tool call?", margin=(0, 10)),
            self.deny_text,
            self.deny_message,
            pn.Row(self.confirm_deny, self.cancel_deny),
            open=False,
            show_close_button=True,
        )
        self._pending_ids: frozenset[str] = frozenset()
        # Fixed height: a message appearing must not move the table (see above).
        self.message = pn.pane.HTML("", height=28, margin=(0, 10))

        self.layout = pn.Column(
            pn.Row(
                pn.pane.Markdown("## sessionwatch", margin=(0, 10)),
                self.connection,
                self.retry,
                self.summary,
                self.away,
                self.away_label,
            ),
            pn.Row(self.source_filter, self.status_filter, self.host_filter, self.text_filter),
            self.confirm,
            self.deny,
            self.message,
            self.table,
            sizing_mode="stretch_width",
            stylesheets=[CSS],
        )
        self._show_connection()
        self.feed.subscribe(self._on_feed)
        if bokeh_compat.session_context(self.doc) is not None:
            bokeh_compat.on_session_destroyed(self._on_destroyed)
        #: the token's role (GET /auth); None until known: the controls show, the server decides
        self.role: str | None = None
        self._apply()
        self._in_thread(self._load_away)
        self._in_thread(self._load_role)

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
        if bokeh_compat.session_context(self.doc) is None:
            callback()  # not served (tests, notebooks): apply at once
            return
        # With this document as `curdoc`, so the table's updates are sent at
        # once and in order (see bokeh_compat.execute_in_document).
        if not bokeh_compat.execute_in_document(self.doc, callback):
            log.warning("could not schedule a dashboard update")
            with self._pending_lock:
                self._pending = False

    def _apply_scheduled(self) -> None:
        with self._pending_lock:
            self._pending = False
        self._apply()

    def _apply(self) -> None:
        self._show_connection()
        sessions = self.feed.sessions()
        self._show_hosts(sessions)
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
        # A prompt held or released: the switch's count of waiting prompts follows.
        pending = frozenset(
            f"{sid}/{s['pending']['id']}" for sid, s in sessions.items() if can_approve(s)
        )
        if pending != self._pending_ids:
            self._pending_ids = pending
            self._in_thread(self._load_away)
        if self._deny_target is not None and self._deny_target[0] not in {p.split("/", 1)[0] for p in pending}:
            self._close_deny()

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

    def _show_hosts(self, sessions: dict[str, Any]) -> None:
        hosts = {h for s in sessions.values() if isinstance(h := s.get("host"), str) and h}
        if self.filters.host:
            hosts.add(self.filters.host)
        options = {ALL_HOSTS: "", **{h: h for h in sorted(hosts)}}
        if options != self.host_filter.options:
            self.host_filter.options = options

    def _on_filter(self, *events: Any) -> None:
        self.filters = Filters(
            sources=tuple(self.source_filter.value),
            statuses=tuple(self.status_filter.value),
            text=self.text_filter.value_input or "",
            host=self.host_filter.value or "",
        )
        self._full = True
        self._apply()

    def _on_destroyed(self, session_context: Any) -> None:
        self.feed.unsubscribe(self._on_feed)

    # -- kill -------------------------------------------------------------------

    # -- the token's role: Kill, Approve / Deny and Away only for an operator or admin ---------

    def _load_role(self) -> None:
        try:
            with SyncApi(self.server_url, self.token, timeout_s=REQUEST_TIMEOUT_S) as api:
                role = api.request("GET", "/auth").json().get("role")
        except (ClientError, ValueError, AttributeError) as error:
            log.debug("GET /auth failed: %s", error)
            return
        if role in ROLES:
            self._schedule(lambda: self._show_role(str(role)))

    def may_act(self) -> bool:
        """Whether this tab's token may kill, approve and switch away mode (operator or above)."""
        return self.role is None or allows(self.role, "operator")  # type: ignore[arg-type]

    def _show_role(self, role: str) -> None:
        self.role = role
        acting = self.may_act()
        self.table.hidden_columns = ["id"] if acting else ["id", "kill", "approve", "deny"]
        self.away.visible = acting

    def _on_click(self, event: Any) -> None:
        if event.column not in ("kill", "approve", "deny") or not self.may_act():
            return
        try:
            sid = str(self.table.value["id"].iloc[event.row])
        except (IndexError, KeyError, TypeError):
            return
        if event.column != "kill":
            self._on_answer_click(sid, "allow" if event.column == "approve" else "deny")
            return
        session = self.feed.sessions().get(sid)
        if session is None or session.get("source") != "panel" or session.get("kill_requested"):
            return
        self._target = sid
        user = session.get("user")
        self.confirm_text.object = (
            f"Kill Panel session <code>{html.escape(sid[:12])}</code> of "
            f"<b>{html.escape(text(session.get('project')))}</b>"
            f"{' (user ' + html.escape(text(user)) + ')' if user else ''}?"
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
        except AuthError as error:
            self._say(f"Kill failed: {html.escape(error.sentence or 'the server rejected the token.')}")
        except ServerUnreachable as error:
            self._say(f"Kill failed: the server did not answer ({html.escape(str(error))}).")
        except ApiError as error:
            self._say(f"Kill failed: {html.escape(error.sentence)}")
        else:
            self._say(f"Kill requested for <code>{html.escape(sid[:12])}</code>.")

    # -- approvals and away mode -----------------------------------------------------
    # Requests run on threads, as the kill's (see _on_confirm).

    def _in_thread(self, target: Callable[..., None], *args: Any) -> None:
        threading.Thread(target=target, args=args, daemon=True).start()

    def _on_answer_click(self, sid: str, decision: Decision) -> None:
        session = self.feed.sessions().get(sid)
        if session is None or not can_approve(session):
            return
        pending = session["pending"]
        pending_id = str(pending["id"])
        what = text(pending.get("summary") or pending.get("tool"))
        if decision == "allow":
            self._in_thread(self._request_answer, sid, pending_id, "allow", None, what)
            return
        self._deny_target = (sid, pending_id, what)
        self.deny_text.object = (
            f"<b>{html.escape(what)}</b> in <b>{html.escape(text(session.get('project')))}</b>"
            f"{' (' + html.escape(text(session.get('title'))) + ')' if session.get('title') else ''}"
        )
        self.deny_message.value = ""
        self.deny.open = True

    def _close_deny(self) -> None:
        self._deny_target = None
        self.deny.open = False

    def _on_confirm_deny(self, event: Any) -> None:
        target = self._deny_target
        message = self.deny_message.value_input or self.deny_message.value or ""
        self._close_deny()
        if target is None:
            return
        sid, pending_id, what = target
        self._in_thread(self._request_answer, sid, pending_id, "deny", message, what)

    def _request_answer(self, sid: str, pending_id: str, decision: Decision, message: str | None, what: str) -> None:
        try:
            with SyncApi(self.server_url, self.token, timeout_s=REQUEST_TIMEOUT_S) as api:
                approve(api, sid, pending_id, decision, message)
        except AuthError as error:
            self._say(f"Could not answer the prompt: {html.escape(error.sentence or 'the server rejected the token.')}")
        except ServerUnreachable as error:
            self._say(f"Could not answer the prompt: the server did not answer ({html.escape(str(error))}).")
        except ApiError as error:
            self._say(f"Could not answer the prompt: {html.escape(error.sentence)}")
        else:
            self._say(f"{'Approved' if decision == 'allow' else 'Denied'}: {html.escape(what)}")

    def _load_away(self) -> None:
        try:
            with SyncApi(self.server_url, self.token, timeout_s=REQUEST_TIMEOUT_S) as api:
                away = get_away(api)
        except ClientError as error:
            log.debug("GET /away failed: %s", error)
            return
        self._schedule(lambda: self._show_away(away))

    def _show_away(self, away: dict[str, Any]) -> None:
        on = bool(away.get("on"))
        waiting = away.get("waiting")
        count = len(waiting) if isinstance(waiting, list) else 0
        self._away_from_server = True
        try:
            self.away.value = on
        finally:
            self._away_from_server = False
        label = "Away: on" if on else "Away: off"
        if on and count:
            label += f" ({count} waiting)"
        self.away_label.object = f'<span class="sw-away sw-away-{"on" if on else "off"}">{html.escape(label)}</span>'

    def _on_away(self, event: Any) -> None:
        if self._away_from_server:
            return
        self._in_thread(self._request_away, bool(event.new))

    def _request_away(self, on: bool) -> None:
        try:
            with SyncApi(self.server_url, self.token, timeout_s=REQUEST_TIMEOUT_S) as api:
                away = set_away(api, on)
        except AuthError as error:
            self._say(f"Could not change away mode: {html.escape(error.sentence or 'the server rejected the token.')}")
        except ServerUnreachable as error:
            self._say(f"Could not change away mode: the server did not answer ({html.escape(str(error))}).")
        except ApiError as error:
            self._say(f"Could not change away mode: {html.escape(error.sentence)}")
        else:
            self._schedule(lambda: self._show_away(away))
            return
        self._in_thread(self._load_away)  # show the server's switch again

    def _say(self, text: str) -> None:
        """Show ``text``, HTML in which every outside value is escaped."""

        def show() -> None:
            self.message.object = text

        self._schedule(show)
