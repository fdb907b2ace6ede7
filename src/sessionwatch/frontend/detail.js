// The session detail panel: opened by a row (or the URL's ?session=), loaded
// from GET /sessions/{id}, reloaded soon after the session changes, closed
// with its button or Escape.

import { approvalEntries, pendingLine } from './approvals.js';
import { approveButtons } from './approve.js';
import { requireSignIn } from './auth.js';
import { $, h } from './dom.js';
import { compactNumber, cost, duration, relativeTime, safeHttpUrl, totalTokens } from './format.js';
import { ManagedPanel } from './controls.js';
import { actionEntries, isManaged } from './managed.js';
import { STATUS_LABELS } from './model.js';
import { state } from './state.js';
import { killButton, markSelected, saveView } from './table.js';

let detailTimer = null;
let detailRequest = 0;
// The managed session's part of the panel (controls.js): kept across redraws
// (the message box keeps its text, the conversation its stream) until the
// panel closes or shows another session.
let panel = null;
const managedHost = h('div', { id: 'detail-managed' });
const info = h('div', { id: 'detail-info' });

function dropPanel() {
  panel?.close();
  panel = null;
  managedHost.replaceChildren();
}

export function select(id) {
  if (panel && panel.id !== id) dropPanel();
  state.view.session = id;
  saveView();
  markSelected(id);
  state.detail = null;
  $('detail').hidden = false;
  document.body.classList.add('has-detail');
  $('detail-title').textContent = 'Session';
  info.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  $('detail-body').replaceChildren(managedHost, info);
  loadDetail();
}

function closeDetail() {
  dropPanel();
  state.view.session = '';
  state.detail = null;
  saveView();
  $('detail').hidden = true;
  document.body.classList.remove('has-detail');
  markSelected(null);
}

/** The selected session changed: load it again, at most every half second. */
export function refreshDetailSoon() {
  if (detailTimer !== null) return;
  detailTimer = setTimeout(() => {
    detailTimer = null;
    loadDetail();
  }, 500);
}

async function loadDetail() {
  const id = state.view.session;
  if (!id) return;
  const request = ++detailRequest;
  let response;
  try {
    response = await fetch(`sessions/${encodeURIComponent(id)}`, { cache: 'no-store', headers: { Accept: 'application/json' } });
  } catch {
    if (request === detailRequest && !state.detail) showDetailMessage('The server does not answer.');
    return;
  }
  if (request !== detailRequest || state.view.session !== id) return;
  if (response.status === 404) return showDetailGone();
  if (response.status === 401) return requireSignIn('Sign in to see session details.');
  if (!response.ok) return showDetailMessage(`Could not load the session (HTTP ${response.status}).`);
  try {
    state.detail = await response.json();
  } catch {
    return showDetailMessage('The server sent something that is not JSON.');
  }
  renderDetail(state.detail);
}

function showDetailMessage(text) {
  info.replaceChildren(h('p', { class: 'muted' }, text));
}

export function showDetailGone() {
  if ($('detail').hidden) return;
  state.detail = null;
  dropPanel();
  showDetailMessage('This session is gone: it ended and was removed.');
}

/** Draw the panel again from the last answer (after the sign-in changed). */
export function redrawDetail() {
  if (state.detail) renderDetail(state.detail);
}

function renderDetail(s) {
  $('detail-title').textContent = s.title ?? s.current_task ?? s.project ?? s.id;
  const t = s.tokens ?? {};
  const fields = [
    ['Status', h('span', { class: `status status-${s.status}` }, STATUS_LABELS[s.status] ?? String(s.status))],
    ['Why', s.status_reason],
    ['Waiting for', s.pending ? `${s.pending.kind === 'question' ? 'an answer' : 'permission'}: ${pendingLine(s.pending)}${s.pending.since ? ` (since ${s.pending.since})` : ''}` : null],
    ['Source', s.source],
    ['Project', s.project],
    ['Session id', h('code', {}, s.id)],
    ['Current task', s.current_task],
    ['User', s.user],
    ['Host', s.host],
    ['Branch', s.git_branch],
    ['Model', s.model],
    ['Version', s.version],
    ['Started', s.started_at],
    ['Last activity', h('span', { dataset: { field: 'last_activity' }, title: s.last_activity ?? '' }, relativeTime(s.last_activity, Date.now()))],
    ['Duration', duration(s.duration_seconds)],
    ['Messages', String(s.message_count ?? 0)],
    ['Tool calls', String(s.tool_calls ?? 0)],
    [
      'Tokens',
      `${compactNumber(totalTokens(t))} (input ${t.input ?? 0}, output ${t.output ?? 0}, cache write ${t.cache_creation ?? 0}, cache read ${t.cache_read ?? 0})`,
    ],
    ['Cost', cost(s.cost_usd)],
  ];
  const md = s.managed_detail ?? {};
  if (isManaged(s)) {
    const m = s.managed;
    fields.push(
      ['Managed', `${m.kind === 'run' ? 'sessionwatch run' : 'started here'}: ${m.name ?? ''} (${m.state ?? ''})`],
      ['Directory', md.cwd],
      ['Permission mode', md.permission_mode],
      ['Allowed tools', Array.isArray(md.allowed_tools) && md.allowed_tools.length ? md.allowed_tools.join(', ') : null],
      ['Max turns', typeof md.max_turns === 'number' ? String(md.max_turns) : null],
      ['System prompt', md.system_prompt],
      ['Budget', typeof m.max_cost_usd === 'number' ? cost(m.max_cost_usd) : null],
      ['Turns', typeof m.num_turns === 'number' ? String(m.num_turns) : null],
      ['Claude Code cost', typeof m.total_cost_usd === 'number' ? `$${m.total_cost_usd.toFixed(4)}` : null],
      ['Exit status', typeof m.exit_code === 'number' ? String(m.exit_code) : null],
      ['Started by', md.user],
    );
  }
  if (s.source === 'panel') {
    fields.push(['PID', s.pid === undefined || s.pid === null ? null : String(s.pid)]);
    const href = safeHttpUrl(s.url);
    fields.push(['URL', href ? h('a', { href, target: '_blank', rel: 'noopener noreferrer' }, href) : s.url]);
    fields.push(['Kill requested', s.kill_requested ? 'yes' : 'no']);
  }
  const dl = h('dl', { class: 'fields' });
  for (const [label, value] of fields) {
    if (value === null || value === undefined || value === '') continue;
    dl.append(h('dt', {}, label), h('dd', {}, value));
  }
  const parts = [dl];
  // A managed session's Approve / Deny are in its own part, beside the conversation.
  const answers = isManaged(s) ? null : approveButtons(s);
  if (answers) parts.push(h('div', { class: 'detail-actions' }, answers));
  const actions = actionEntries(s);
  if (actions.length) {
    parts.push(
      h('h3', {}, 'Actions'),
      h(
        'ul',
        { class: 'actions-log' },
        actions.map((a) =>
          h(
            'li',
            { dataset: { action: a.action } },
            h('span', { class: 'action' }, a.action),
            a.detail ? ` ${a.detail}` : '',
            h(
              'small',
              { class: 'by' },
              ` by ${a.who}`,
              a.where ? ` from ${a.where}` : '',
              ' · ',
              h('time', { datetime: a.when, title: a.when }, relativeTime(a.when, Date.now())),
            ),
          ),
        ),
      ),
    );
  }
  const decisions = approvalEntries(s);
  if (decisions.length) {
    parts.push(
      h('h3', {}, 'Decisions'),
      h(
        'ul',
        { class: 'approvals' },
        decisions.map((d) =>
          h(
            'li',
            { dataset: { decision: d.decision } },
            h('span', { class: `decision decision-${d.decision}` }, d.decision),
            ' ',
            h('span', { class: 'summary' }, d.summary),
            d.message ? h('q', { class: 'message' }, d.message) : null,
            h(
              'small',
              { class: 'by' },
              `by ${d.who}`,
              d.where ? ` from ${d.where}` : '',
              ' · ',
              h('time', { datetime: d.when, title: d.when }, relativeTime(d.when, Date.now())),
            ),
          ),
        ),
      ),
    );
  }
  if (s.source === 'panel') {
    parts.push(h('div', { class: 'detail-actions' }, killButton(s)));
    const kills = Array.isArray(s.kills) ? s.kills : [];
    if (kills.length) {
      parts.push(
        h('h3', {}, 'Kill requests'),
        h('ul', { class: 'recent' }, kills.map((k) => h('li', {}, h('time', {}, k.requested_at ?? ''), ' ', k.requested_by ?? 'unknown'))),
      );
    }
  }
  if (Array.isArray(s.recent)) {
    parts.push(h('h3', {}, 'Recent activity'));
    if (s.recent.length === 0) parts.push(h('p', { class: 'muted' }, 'Nothing yet.'));
    else {
      parts.push(
        h(
          'ol',
          { class: 'recent' },
          s.recent.map((item) =>
            h(
              'li',
              { dataset: { kind: String(item.kind ?? '') } },
              h('span', { class: 'kind' }, String(item.kind ?? '')),
              h('span', { class: 'summary' }, String(item.summary ?? '')),
              h('time', { title: item.timestamp ?? '' }, relativeTime(item.timestamp, Date.now())),
            ),
          ),
        ),
      );
    }
  }
  info.replaceChildren(...parts);
  showManaged(s);
  if ($('detail-body').firstChild !== managedHost) $('detail-body').replaceChildren(managedHost, info);
}

/** The managed part of the panel for session `s` (made when first needed), or none for other sessions. */
function showManaged(s) {
  if (!isManaged(s)) {
    if (panel) dropPanel();
    return;
  }
  if (!panel || panel.id !== s.id) {
    dropPanel();
    panel = new ManagedPanel(s.id, { onDeleted: () => showDetailGone() });
    managedHost.replaceChildren(panel.el);
  }
  panel.update(s);
}

/** The open session changed (from the stream): its buttons follow at once, before the detail reloads. */
export function updateManaged(session) {
  if (panel && panel.id === session.id && state.view.session === session.id && isManaged(session)) panel.update(session);
}

/** The panel's "12 s ago". */
export function tickDetail(now) {
  if (!state.detail) return;
  const el = document.querySelector('#detail-body [data-field="last_activity"]');
  if (el) el.textContent = relativeTime(state.detail.last_activity, now);
}

/** Close button, Escape, and the panel of a ?session= in the URL. */
export function bindDetail() {
  $('detail-close').addEventListener('click', closeDetail);
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape' || $('detail').hidden) return;
    // Escape in a message being written clears nothing: the panel stays with the text
    if (e.target instanceof HTMLTextAreaElement && e.target.value) return;
    closeDetail();
  });
  if (state.view.session) {
    $('detail').hidden = false;
    document.body.classList.add('has-detail');
    $('detail-body').replaceChildren(managedHost, info);
    loadDetail();
  }
}
