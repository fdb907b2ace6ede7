// The sessions table: its rows (created once, patched in place), sorting,
// the search box and filters (kept in the URL), the totals, and the Kill
// button of Panel rows. What a row click or a changed session means for the
// rest of the page is main.js's, through onRows().

import { approveButtons } from './approve.js';
import { can, canKill, requireSignIn } from './auth.js';
import { $, h, showMessage } from './dom.js';
import { compactNumber, cost } from './format.js';
import { SOURCE_LABELS, STATUSES, STATUS_LABELS } from './model.js';
import { state } from './state.js';
import { COLUMNS, statusNote, totals, viewQuery, visibleSessions } from './view.js';

// A kill reaches a tracker at once through its /stream; the answer to its
// next heartbeat is only the fallback (a tracker that cannot follow the stream).
const KILL_CONFIRM = 'The app ends it as soon as the kill reaches it: at once while it follows the server, else at its next heartbeat.';
const KILL_REQUESTED_TITLE = 'Kill requested; the app ends the session as soon as the kill reaches it';
const KILL_DONE = 'Kill requested. The app ends the session as soon as the kill reaches it (at once while it follows the server).';

const hooks = { select: () => {}, changed: () => {}, gone: () => {} };

/** `select(id)`: a row was chosen; `changed(before, after)`: a session was put in; `gone(id)`: one went away. */
export function onRows({ select, changed, gone }) {
  Object.assign(hooks, { select, changed, gone });
}

// --- head and sorting ----------------------------------------------------------

export function buildHead() {
  const head = $('head');
  head.replaceChildren();
  for (const col of COLUMNS) {
    const sorted = state.view.sort === col.key;
    const th = h(
      'th',
      {
        scope: 'col',
        class: [col.numeric ? 'num' : '', col.optional ? 'optional' : ''].join(' ').trim() || null,
        dataset: { col: col.key },
        'aria-sort': sorted ? (state.view.dir === 'asc' ? 'ascending' : 'descending') : 'none',
      },
      h(
        'button',
        { type: 'button', class: 'sort', onclick: () => sortBy(col.key) },
        col.label,
        h('span', { class: 'arrow', 'aria-hidden': 'true' }, sorted ? (state.view.dir === 'asc' ? '▲' : '▼') : ''),
      ),
    );
    head.append(th);
  }
  head.append(h('th', { scope: 'col', class: 'actions' }, h('span', { class: 'visually-hidden' }, 'Actions')));
}

function sortBy(key) {
  if (state.view.sort === key) {
    state.view.dir = state.view.dir === 'asc' ? 'desc' : 'asc';
  } else {
    state.view.sort = key;
    const col = COLUMNS.find((c) => c.key === key);
    state.view.dir = col.numeric || key === 'last_activity' ? 'desc' : 'asc';
  }
  saveView();
  buildHead();
  layout();
}

// --- rows ----------------------------------------------------------------------

function createRow(session) {
  const tr = h('tr', { tabindex: '0', dataset: { id: session.id } });
  tr.addEventListener('click', (event) => {
    if (event.target.closest('button')) return;
    hooks.select(session.id);
  });
  tr.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' || event.key === ' ') {
      event.preventDefault();
      hooks.select(session.id);
    }
  });
  const cells = {};
  for (const col of COLUMNS) {
    const td = h('td', {
      dataset: { col: col.key },
      class: [col.numeric ? 'num' : '', col.optional ? 'optional' : ''].join(' ').trim() || null,
    });
    cells[col.key] = td;
    tr.append(td);
  }
  cells.actions = h('td', { class: 'actions', dataset: { col: 'actions' } });
  tr.append(cells.actions);
  return { tr, cells, texts: {}, status: null };
}

/** Put `session`'s values in its row; flash the cells whose text changed. */
function fillRow(row, session, flash) {
  const now = Date.now();
  for (const col of COLUMNS) {
    const note = col.note ? col.note(session) : '';
    const marker = col.marker ? col.marker(session) : '';
    const text = col.text(session, now);
    const td = row.cells[col.key];
    if (row.texts[col.key] === text + note + marker) continue;
    row.texts[col.key] = text + note + marker;
    if (col.key === 'status') {
      const badge = h('span', { class: `status status-${session.status}` }, text);
      td.replaceChildren(...(note ? [badge, ' ', h('small', { class: 'status-note' }, note)] : [badge]));
    } else if (marker) {
      td.replaceChildren(h('span', { class: 'managed-marker', title: 'Managed by sessionwatch' }, marker), ' ', text);
    } else {
      td.textContent = text;
    }
    if (flash) flashCell(td);
  }
  // Hover text for what a cell shortens.
  const note = statusNote(session);
  row.cells.status.title = (STATUS_LABELS[session.status] ?? '') + (note ? ` (${note})` : '');
  row.cells.project.title = session.project ?? '';
  row.cells.title.title = session.title ?? session.current_task ?? '';
  row.cells.model.title = session.model ?? '';
  row.cells.last_activity.title = session.last_activity ?? '';
  const t = session.tokens ?? {};
  row.cells.tokens.title = `input ${t.input ?? 0}, output ${t.output ?? 0}, cache write ${t.cache_creation ?? 0}, cache read ${t.cache_read ?? 0}`;
  row.tr.classList.toggle('selected', state.view.session === session.id);
  row.tr.dataset.status = session.status;
  row.tr.dataset.source = session.source;
  fillActions(row, session);
}

function fillActions(row, session) {
  const td = row.cells.actions;
  if (session.source !== 'panel') {
    // Approve / Deny while the server holds the session's prompt open (away mode).
    const key = `${session.pending?.id ?? ''}|${(session.controls ?? []).join(',')}|${canKill()}|${state.forbidden}|${can('approve')}`;
    if (td.dataset.key === key) return;
    td.dataset.key = key;
    const buttons = approveButtons(session);
    td.replaceChildren(...(buttons ? [buttons] : []));
    return;
  }
  const key = `${session.kill_requested}|${session.status}|${canKill()}|${can('kill')}`;
  if (td.dataset.key === key) return;
  td.dataset.key = key;
  const button = killButton(session);
  td.replaceChildren(...(button ? [button] : []));
}

/** Redraw the Kill and Approve / Deny buttons after the sign-in changed. */
export function refreshKillButtons() {
  for (const [id, row] of state.rows) fillActions(row, state.sessions.get(id));
}

/** Mark the row of `id` (or none) as the selected one. */
export function markSelected(id) {
  for (const [rid, row] of state.rows) row.tr.classList.toggle('selected', rid === id);
}

function flashCell(td) {
  td.classList.remove('flash');
  void td.offsetWidth; // restart the animation
  td.classList.add('flash');
}

/** Insert or update one session. */
export function upsert(session, { flash = true } = {}) {
  if (!session || typeof session.id !== 'string') return;
  const before = state.sessions.get(session.id);
  state.sessions.set(session.id, session);
  let row = state.rows.get(session.id);
  if (!row) {
    row = createRow(session);
    state.rows.set(session.id, row);
    fillRow(row, session, false);
    if (flash && state.loaded) row.tr.classList.add('new');
  } else {
    fillRow(row, session, flash);
  }
  hooks.changed(before, session);
}

export function remove(id) {
  state.sessions.delete(id);
  const row = state.rows.get(id);
  if (row) {
    row.tr.remove();
    state.rows.delete(id);
  }
  hooks.gone(id);
}

/** Make the table hold exactly `sessions`. */
export function replaceAll(sessions) {
  const keep = new Set();
  for (const s of sessions) {
    if (s && typeof s.id === 'string') keep.add(s.id);
  }
  for (const id of [...state.sessions.keys()]) {
    if (!keep.has(id)) remove(id);
  }
  for (const s of sessions) upsert(s, { flash: state.loaded });
  state.loaded = true;
}

/** Show the rows that pass the view, in its order, moving only the rows that must move. */
export function layout() {
  const tbody = $('rows');
  const visible = visibleSessions(state.sessions.values(), state.view);
  const wanted = visible.map((s) => state.rows.get(s.id).tr);
  const wantedSet = new Set(wanted);
  for (const tr of [...tbody.children]) {
    if (!wantedSet.has(tr)) tr.remove();
  }
  wanted.forEach((tr, i) => {
    if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] ?? null);
  });
  // Status counts ignore the status filter, so each chip says what clicking it shows.
  const byStatus = state.view.status
    ? totals(visibleSessions(state.sessions.values(), { ...state.view, status: '' }), 0).byStatus
    : null;
  renderTotals(visible, byStatus);
  renderEmpty(visible.length);
  renderHosts();
}

/** The Host menu: every host a session names (and the one chosen, even with no session left). */
function renderHosts() {
  const select = $('host');
  const hosts = new Set([...state.sessions.values()].map((s) => s.host).filter((h) => typeof h === 'string' && h));
  if (state.view.host) hosts.add(state.view.host);
  const wanted = [...hosts].sort();
  const shown = [...select.options].slice(1).map((o) => o.value);
  if (wanted.join('\n') === shown.join('\n')) return;
  while (select.options.length > 1) select.remove(1);
  for (const host of wanted) select.append(h('option', { value: host }, host));
  select.value = state.view.host;
}

function renderEmpty(visibleCount) {
  const empty = $('empty');
  let text = '';
  if (!state.loaded) text = 'Connecting to the server…';
  else if (state.sessions.size === 0) text = 'No sessions yet — start Claude Code in any project';
  else if (visibleCount === 0) text = 'No sessions match the search and filters.';
  empty.textContent = text;
  empty.hidden = !text;
  $('sessions').classList.toggle('is-empty', visibleCount === 0);
}

function renderTotals(visible, byStatus = null) {
  const t = totals(visible, Date.now());
  if (byStatus) t.byStatus = byStatus;
  const section = $('totals');
  const chips = STATUSES.map((status) =>
    h(
      'button',
      {
        type: 'button',
        class: `chip status-${status}${state.view.status === status ? ' active' : ''}`,
        dataset: { status },
        title: `Show only ${STATUS_LABELS[status]}`,
        onclick: () => setFilter('status', state.view.status === status ? '' : status),
      },
      h('span', { class: 'count' }, String(t.byStatus[status])),
      ` ${STATUS_LABELS[status]}`,
    ),
  );
  const money = (label, part, cls) =>
    h(
      'span',
      { class: `figure ${cls}`, title: `${part.sessions} session${part.sessions === 1 ? '' : 's'}` },
      h('span', { class: 'figure-label' }, label),
      ` ${compactNumber(part.tokens)} tokens · ${cost(part.cost)}`,
    );
  section.replaceChildren(
    h('div', { class: 'chips' }, chips),
    h('div', { class: 'figures' }, money('Active today', t.today, 'today'), money('All shown', t.all, 'all')),
  );
}

/** Update the cells that change with the clock alone ("12 s ago"), in the rows shown. */
export function tick(now) {
  const ticking = COLUMNS.filter((c) => c.ticks);
  for (const tr of $('rows').children) {
    const id = tr.dataset.id;
    const row = state.rows.get(id);
    const session = state.sessions.get(id);
    if (!row || !session) continue;
    for (const col of ticking) {
      const text = col.text(session, now);
      if (row.texts[col.key] !== text) {
        row.texts[col.key] = text;
        row.cells[col.key].textContent = text;
      }
    }
  }
}

// --- search, filters, URL ------------------------------------------------------

export function saveView() {
  const url = `${location.pathname}${viewQuery(state.view)}${location.hash}`;
  history.replaceState(null, '', url);
}

function setFilter(key, value) {
  state.view[key] = value;
  if (key === 'source') $('source').value = value;
  if (key === 'status') $('status').value = value;
  if (key === 'host') $('host').value = value;
  saveView();
  layout();
}

/** Fill the source and status menus from model.js and follow the search box and both menus. */
export function bindControls() {
  for (const [value, label] of Object.entries(SOURCE_LABELS)) $('source').append(h('option', { value }, label));
  for (const [value, label] of Object.entries(STATUS_LABELS)) $('status').append(h('option', { value }, label));
  const q = $('q');
  q.value = state.view.q;
  $('source').value = state.view.source;
  $('status').value = state.view.status;
  q.addEventListener('input', () => {
    state.view.q = q.value;
    saveView();
    layout();
  });
  $('source').addEventListener('change', (e) => setFilter('source', e.target.value));
  $('status').addEventListener('change', (e) => setFilter('status', e.target.value));
  $('host').addEventListener('change', (e) => setFilter('host', e.target.value));
  $('controls').addEventListener('submit', (e) => e.preventDefault());
}

// --- kill ------------------------------------------------------------------------

/** The Kill button of a Panel session (in its row and in the detail panel); null when the token's role may not kill. */
export function killButton(session) {
  if (canKill() && !can('kill')) return null;
  const requested = Boolean(session.kill_requested);
  const allowed = canKill();
  return h(
    'button',
    {
      type: 'button',
      class: 'kill',
      disabled: requested || !allowed || session.status === 'ended',
      title: requested ? KILL_REQUESTED_TITLE : allowed ? 'Ask the app to end this session' : 'Sign in to kill sessions',
      onclick: (event) => {
        event.stopPropagation();
        kill(session.id);
      },
    },
    requested ? 'Kill requested' : 'Kill',
  );
}

async function kill(id) {
  const s = state.sessions.get(id) ?? state.detail;
  const name = s ? `${s.project ?? id}${s.user ? ` (${s.user})` : ''}` : id;
  if (!window.confirm(`Kill the Panel session ${name}?\n\n${KILL_CONFIRM}`)) return;
  let response;
  try {
    response = await fetch(`sessions/${encodeURIComponent(id)}/kill`, { method: 'POST', headers: { Accept: 'application/json' } });
  } catch {
    return showMessage('The server does not answer; the session was not killed.');
  }
  if (response.status === 401) return requireSignIn('Sign in to kill sessions.');
  if (!response.ok) {
    let error = `HTTP ${response.status}`;
    try {
      error = (await response.json()).error ?? error;
    } catch {
      // keep the status
    }
    return showMessage(`Could not kill the session: ${error}`);
  }
  const current = state.sessions.get(id);
  if (current) {
    upsert({ ...current, kill_requested: true });
    layout();
  }
  showMessage(KILL_DONE);
}
