// The sessionwatch web dashboard's entry point: boots the page and wires its
// parts together. The connection (connection.js) feeds the table (table.js);
// a row opens the detail panel (detail.js); sign-in (auth.js) starts and
// stops the connection; status changes may raise a browser notification.

import { bindAway, loadAway, loadAwaySoon } from './approve.js';
import { checkAuthAfterFailure, onAuthChange, requireSignIn, startAuth } from './auth.js';
import { bindBanner, drawBanner } from './banner.js';
import { Connection, STATES } from './connection.js';
import { bindDetail, redrawDetail, refreshDetailSoon, select, showDetailGone, tickDetail, updateManaged } from './detail.js';
import { $, showMessage } from './dom.js';
import { bindNewSession, refreshNewSession } from './newsession.js';
import { notificationFor } from './notify.js';
import { state } from './state.js';
import { bindControls, buildHead, layout, onRows, refreshKillButtons, remove, replaceAll, tick, upsert } from './table.js';

// Tests (and anyone embedding the page) may tune the connection timings by
// setting window.SESSIONWATCH_OPTIONS before this module runs.
const connectionOptions = { ...(globalThis.SESSIONWATCH_OPTIONS ?? {}) };

let conn = null;

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
  drawBanner();
}

function onSnapshot({ sessions }) {
  replaceAll(sessions);
  layout();
  drawBanner();
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

// --- notifications -------------------------------------------------------------

const NOTIFY_KEY = 'sessionwatch.notify';

function maybeNotify(before, after) {
  if (!state.notify || typeof Notification !== 'function' || Notification.permission !== 'granted') return;
  // The session whose detail is open in a visible page is the one the person looks at: no notification for it.
  const looking = document.visibilityState === 'visible' && !$('detail').hidden ? state.view.session : null;
  const n = notificationFor(before, after, { looking, view: state.view });
  if (!n) return;
  try {
    const notification = new Notification(n.title, { body: n.body, tag: n.tag, data: { url: n.url } });
    // A click opens the session's detail (the page's URL state, n.url).
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

function killButtonsChanged() {
  refreshKillButtons();
  refreshNewSession();
  redrawDetail();
}

async function main() {
  onRows({
    select,
    changed: (before, after) => {
      if (before) maybeNotify(before, after);
      // a prompt held or released: the switch's count of waiting prompts follows
      if ((before?.pending?.id ?? null) !== (after.pending?.id ?? null)) loadAwaySoon();
      if (state.view.session === after.id) {
        updateManaged(after);
        refreshDetailSoon();
      }
    },
    gone: (id) => {
      if (state.view.session === id) showDetailGone();
    },
  });
  onAuthChange({
    signedIn: () => {
      killButtonsChanged();
      startConnection();
      loadAway();
    },
    signedOut: () => {
      conn?.stop();
      showConnection({ state: STATES.OFFLINE, attempt: 0, maxAttempts: 0, retryInMs: 0 });
      killButtonsChanged();
    },
    forbidden: killButtonsChanged,
  });
  buildHead();
  bindControls();
  bindNotifications();
  bindAway();
  bindNewSession({ open: select });
  bindBanner({ open: select });
  $('conn').addEventListener('click', () => conn?.retryNow());
  window.addEventListener('online', () => conn?.retryNow());
  layout();
  setInterval(() => {
    const now = Date.now();
    tick(now);
    tickDetail(now);
  }, 1000);
  bindDetail();
  await startAuth();
}

main();
