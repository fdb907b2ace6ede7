// The sessionwatch web dashboard: wires the connection to the table, the
// filters, the detail panel, sign-in and notifications.
//
// Every piece of session data reaches the page through textContent or an
// attribute, never through innerHTML: transcript titles are untrusted.

import { Connection, STATES } from './connection.js';
import { STATUS_LABELS, compactNumber, cost, duration, relativeTime, safeHttpUrl, totalTokens } from './format.js';
import { notificationFor } from './notify.js';
import { COLUMNS, STATUSES, parseView, totals, viewQuery, visibleSessions } from './view.js';

// Tests (and anyone embedding the page) may tune the connection timings by
// setting window.SESSIONWATCH_OPTIONS before this module runs.
const connectionOptions = { ...(globalThis.SESSIONWATCH_OPTIONS ?? {}) };

const $ = (id) => document.getElementById(id);

/** Make an element: h('td', {class: 'x', dataset: {col: 'a'}}, 'text', child). Strings become text nodes. */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key in el && typeof value !== 'string') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// --- state -------------------------------------------------------------------

const state = {
  sessions: new Map(), // id -> session
  rows: new Map(), // id -> {tr, cells: {key: td}, texts: {key: text}}
  loaded: false, // at least one init / snapshot applied
  view: parseView(location.search),
  auth: { token_required: false, authenticated: true },
  notify: false,
  detail: null, // the last /sessions/{id} answer for the selected session
};

let conn = null;

// --- table -------------------------------------------------------------------

function buildHead() {
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

function createRow(session) {
  const tr = h('tr', { tabindex: '0', dataset: { id: session.id } });
  tr.addEventListener('click', (event) => {
    if (event.target.closest('button')) return;
    select(session.id);
  });
  tr.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' || event.key === ' ') {
      event.preventDefault();
      select(session.id);
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
    const text = col.text(session, now);
    const td = row.cells[col.key];
    if (row.texts[col.key] === text) continue;
    row.texts[col.key] = text;
    if (col.key === 'status') {
      td.replaceChildren(h('span', { class: `status status-${session.status}` }, text));
    } else {
      td.textContent = text;
    }
    if (flash) flashCell(td);
  }
  // Hover text for what a cell shortens.
  row.cells.status.title = STATUS_LABELS[session.status] ?? '';
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
    if (td.firstChild) td.replaceChildren();
    return;
  }
  const key = `${session.kill_requested}|${session.status}|${canKill()}`;
  if (td.dataset.key === key) return;
  td.dataset.key = key;
  td.replaceChildren(killButton(session));
}

function killButton(session) {
  const requested = Boolean(session.kill_requested);
  const allowed = canKill();
  const button = h(
    'button',
    {
      type: 'button',
      class: 'kill',
      disabled: requested || !allowed || session.status === 'ended',
      title: requested ? 'Kill requested; the app stops at its next heartbeat' : allowed ? 'Ask the app to end this session' : 'Sign in to kill sessions',
      onclick: (event) => {
        event.stopPropagation();
        kill(session.id);
      },
    },
    requested ? 'Kill requested' : 'Kill',
  );
  return button;
}

function flashCell(td) {
  td.classList.remove('flash');
  void td.offsetWidth; // restart the animation
  td.classList.add('flash');
}

/** Insert or update one session. */
function upsert(session, { flash = true } = {}) {
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
  if (before) maybeNotify(before, session);
  if (state.view.session === session.id) refreshDetailSoon();
}

function remove(id) {
  state.sessions.delete(id);
  const row = state.rows.get(id);
  if (row) {
    row.tr.remove();
    state.rows.delete(id);
  }
  if (state.view.session === id) showDetailGone();
}

/** Make the table hold exactly `sessions`. */
function replaceAll(sessions) {
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
function layout() {
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
function tick() {
  const now = Date.now();
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
  if (state.detail) {
    const el = document.querySelector('#detail-body [data-field="last_activity"]');
    if (el) el.textContent = relativeTime(state.detail.last_activity, now);
  }
}

// --- view: search, filters, sort, URL ------------------------------------------

function saveView() {
  const url = `${location.pathname}${viewQuery(state.view)}${location.hash}`;
  history.replaceState(null, '', url);
}

function setFilter(key, value) {
  state.view[key] = value;
  if (key === 'source') $('source').value = value;
  if (key === 'status') $('status').value = value;
  saveView();
  layout();
}

function bindControls() {
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
  $('controls').addEventListener('submit', (e) => e.preventDefault());
}

// --- connection ----------------------------------------------------------------

const INDICATOR = {
  [STATES.CONNECTING]: ['offline', 'Connecting', ''],
  [STATES.LIVE]: ['live', 'Live', ''],
  [STATES.RECONNECTING]: ['offline', 'Offline', 'reconnecting'],
  [STATES.POLLING]: ['polling', 'Polling', ''],
  [STATES.OFFLINE]: ['offline', 'Offline', ''],
};

function showConnection({ state: s, attempt, maxAttempts, retryInMs }) {
  const [cls, label, sub] = INDICATOR[s] ?? INDICATOR[STATES.OFFLINE];
  const el = $('conn');
  el.dataset.state = s;
  el.className = `indicator ${cls}`;
  el.querySelector('.label').textContent = label;
  el.querySelector('.sub').textContent = sub;
  const titles = {
    [STATES.CONNECTING]: 'Connecting to the server',
    [STATES.LIVE]: 'Receiving changes as they happen',
    [STATES.RECONNECTING]: `Connection lost; attempt ${attempt} of ${maxAttempts} in ${Math.round((retryInMs ?? 0) / 1000)} s. Click to retry now.`,
    [STATES.POLLING]: 'Live updates are unavailable; asking the server for the full list every few seconds. Click to retry live updates.',
    [STATES.OFFLINE]: 'The server does not answer; still trying. Click to retry now.',
  };
  el.title = titles[s] ?? '';
  // A failure may mean a token is now needed or the sign-in expired: the
  // EventSource cannot see a 401, /auth can (once polling, /all tells).
  if (s === STATES.RECONNECTING) checkAuthAfterFailure();
}

function onMessage({ type, sessions }) {
  if (type === 'init' || type === 'refresh') replaceAll(sessions);
  else if (type === 'session-created' || type === 'session-updated') for (const s of sessions) upsert(s);
  else if (type === 'session-deleted') for (const s of sessions) remove(s?.id);
  else return;
  state.loaded = true;
  layout();
}

function onSnapshot({ sessions }) {
  replaceAll(sessions);
  layout();
}

function startConnection() {
  conn?.stop();
  conn = new Connection({
    ...connectionOptions,
    onState: showConnection,
    onMessage,
    onSnapshot,
    onAuthRequired: () => requireSignIn('Your sign-in has expired. Enter the token again.'),
  });
  conn.start();
}

// --- auth ----------------------------------------------------------------------

function canKill() {
  return !(state.auth.token_required && !state.auth.authenticated);
}

async function fetchAuth() {
  try {
    const response = await fetch('auth', { cache: 'no-store', headers: { Accept: 'application/json' } });
    if (!response.ok) return null;
    return await response.json();
  } catch {
    return null;
  }
}

async function checkAuthAfterFailure() {
  const auth = await fetchAuth();
  if (auth && auth.token_required && !auth.authenticated) {
    requireSignIn(
      state.auth.token_required ? 'Your sign-in has expired. Enter the token again.' : 'This server now needs its access token.',
    );
  }
}

function requireSignIn(message = '') {
  conn?.stop();
  state.auth = { token_required: true, authenticated: false };
  $('signin').hidden = false;
  $('signin-error').textContent = message;
  $('signout').hidden = true;
  showConnection({ state: STATES.OFFLINE, attempt: 0, maxAttempts: 0, retryInMs: 0 });
  refreshKillButtons();
  $('token').focus();
}

function signedIn() {
  $('signin').hidden = true;
  $('signin-error').textContent = '';
  $('signout').hidden = !state.auth.token_required;
  refreshKillButtons();
  startConnection();
}

function refreshKillButtons() {
  for (const [id, row] of state.rows) fillActions(row, state.sessions.get(id));
  if (state.detail) renderDetail(state.detail);
}

function bindAuth() {
  $('signin').addEventListener('submit', async (event) => {
    event.preventDefault();
    const token = $('token').value;
    let response;
    try {
      response = await fetch('login', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify({ token }),
      });
    } catch {
      $('signin-error').textContent = 'The server does not answer. Try again in a moment.';
      return;
    }
    if (response.ok) {
      $('token').value = '';
      state.auth = { token_required: true, authenticated: true };
      signedIn();
    } else if (response.status === 401) {
      $('signin-error').textContent = 'That token is not right.';
    } else {
      // 429 after too many wrong tokens says how long to wait
      let error = `Sign-in failed (HTTP ${response.status}).`;
      try {
        error = (await response.json()).error ?? error;
      } catch {
        // not JSON: keep the status
      }
      $('signin-error').textContent = error;
    }
  });
  $('signout').addEventListener('click', async () => {
    try {
      await fetch('logout', { method: 'POST' });
    } finally {
      requireSignIn('Signed out.');
    }
  });
}

// --- detail --------------------------------------------------------------------

let detailTimer = null;
let detailRequest = 0;

function select(id) {
  state.view.session = id;
  saveView();
  for (const [rid, row] of state.rows) row.tr.classList.toggle('selected', rid === id);
  state.detail = null;
  $('detail').hidden = false;
  document.body.classList.add('has-detail');
  $('detail-title').textContent = 'Session';
  $('detail-body').replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  loadDetail();
}

function closeDetail() {
  state.view.session = '';
  state.detail = null;
  saveView();
  $('detail').hidden = true;
  document.body.classList.remove('has-detail');
  for (const row of state.rows.values()) row.tr.classList.remove('selected');
}

function refreshDetailSoon() {
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
  $('detail-body').replaceChildren(h('p', { class: 'muted' }, text));
}

function showDetailGone() {
  if ($('detail').hidden) return;
  state.detail = null;
  showDetailMessage('This session is gone: it ended and was removed.');
}

function renderDetail(s) {
  $('detail-title').textContent = s.title ?? s.current_task ?? s.project ?? s.id;
  const t = s.tokens ?? {};
  const fields = [
    ['Status', h('span', { class: `status status-${s.status}` }, STATUS_LABELS[s.status] ?? String(s.status))],
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
  $('detail-body').replaceChildren(...parts);
}

// --- kill ----------------------------------------------------------------------

async function kill(id) {
  const s = state.sessions.get(id) ?? state.detail;
  const name = s ? `${s.project ?? id}${s.user ? ` (${s.user})` : ''}` : id;
  if (!window.confirm(`Kill the Panel session ${name}?\n\nThe app ends it at its next heartbeat.`)) return;
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
  showMessage('Kill requested. The app ends the session at its next heartbeat.');
}

let messageTimer = null;
function showMessage(text) {
  const el = $('message');
  el.textContent = text;
  el.hidden = false;
  clearTimeout(messageTimer);
  messageTimer = setTimeout(() => {
    el.hidden = true;
  }, 6000);
}

// --- notifications -------------------------------------------------------------

const NOTIFY_KEY = 'sessionwatch.notify';

function maybeNotify(before, after) {
  if (!state.notify || typeof Notification !== 'function' || Notification.permission !== 'granted') return;
  const n = notificationFor(before, after);
  if (!n) return;
  try {
    const notification = new Notification(n.title, { body: n.body, tag: n.tag });
    notification.onclick = () => {
      window.focus();
      select(after.id);
    };
  } catch {
    // Some browsers only allow notifications from a service worker.
  }
}

function bindNotifications() {
  const box = $('notify');
  if (typeof Notification !== 'function') {
    $('notify-toggle').hidden = true;
    return;
  }
  state.notify = localStorage.getItem(NOTIFY_KEY) === '1' && Notification.permission === 'granted';
  box.checked = state.notify;
  box.addEventListener('change', async () => {
    if (!box.checked) {
      state.notify = false;
      localStorage.removeItem(NOTIFY_KEY);
      return;
    }
    let permission = Notification.permission;
    if (permission === 'default') {
      try {
        permission = await Notification.requestPermission();
      } catch {
        permission = 'denied';
      }
    }
    if (permission === 'granted') {
      state.notify = true;
      localStorage.setItem(NOTIFY_KEY, '1');
    } else {
      box.checked = false;
      state.notify = false;
      showMessage('This browser blocks notifications from this page; allow them in the site settings.');
    }
  });
}

// --- start ---------------------------------------------------------------------

async function main() {
  buildHead();
  bindControls();
  bindAuth();
  bindNotifications();
  $('detail-close').addEventListener('click', closeDetail);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !$('detail').hidden) closeDetail();
  });
  $('conn').addEventListener('click', () => conn?.retryNow());
  window.addEventListener('online', () => conn?.retryNow());
  layout();
  setInterval(tick, 1000);

  if (state.view.session) {
    $('detail').hidden = false;
    document.body.classList.add('has-detail');
    loadDetail();
  }

  const auth = await fetchAuth();
  if (auth) state.auth = { token_required: Boolean(auth.token_required), authenticated: Boolean(auth.authenticated) };
  if (state.auth.token_required && !state.auth.authenticated) requireSignIn();
  else signedIn();
}

main();
