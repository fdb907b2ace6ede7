// Answering permission prompts from the page: the Approve / Deny buttons of a
// session whose `controls` include "approve" (in its row and in the detail
// panel), and the Away switch in the header (GET / PUT /away). The pure parts
// are approvals.js's.

import { approveBody, approveError, awayText, canApprove, pendingLine } from './approvals.js';
import { can, canKill, forbid, requireSignIn } from './auth.js';
import { $, h, showMessage } from './dom.js';
import { state } from './state.js';

const DENY_PROMPT = 'Deny this tool call? Claude Code gets your message (leave it empty for none):';

/** Approve / Deny for the session's pending prompt, or null when it cannot be answered from here
 * (or the token's role may not answer prompts). */
export function approveButtons(session) {
  // none for a token the server refused an action (403), or whose role may not answer
  if (!canApprove(session) || state.forbidden) return null;
  if (canKill() && !can('approve')) return null;
  const allowed = canKill();
  const what = pendingLine(session.pending);
  const button = (decision, label, cls) =>
    h(
      'button',
      {
        type: 'button',
        class: `answer ${cls}`,
        dataset: { decision },
        disabled: !allowed,
        title: allowed ? `${label}: ${what}` : 'Sign in to answer prompts',
        onclick: (event) => {
          event.stopPropagation();
          answer(session.id, session.pending.id, decision, event.currentTarget);
        },
      },
      label,
    );
  return h('span', { class: 'answers' }, button('allow', 'Approve', 'approve'), button('deny', 'Deny', 'deny'));
}

/** POST the decision; a deny first asks for an optional message (Cancel sends nothing). */
export async function answer(id, pendingId, decision, el = null) {
  let message = null;
  if (decision === 'deny') {
    message = window.prompt(DENY_PROMPT, '');
    if (message === null) return false;
  }
  const group = el?.closest('.answers');
  const buttons = group ? [...group.querySelectorAll('button')] : [];
  for (const b of buttons) b.disabled = true;
  let response;
  try {
    response = await fetch(`sessions/${encodeURIComponent(id)}/approve`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(approveBody(pendingId, decision, message)),
    });
  } catch {
    for (const b of buttons) b.disabled = false;
    showMessage('The server does not answer; the prompt was not answered.');
    return false;
  }
  if (response.status === 401) {
    requireSignIn('Sign in to answer prompts.');
    return false;
  }
  if (response.status === 403) forbid();
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: the status says enough
  }
  if (!response.ok) {
    for (const b of buttons) b.disabled = false;
    showMessage(approveError(response.status, body));
    return false;
  }
  showMessage(`${decision === 'allow' ? 'Approved' : 'Denied'}: ${pendingLine(body ?? {})}`);
  return true;
}

// --- the away switch -------------------------------------------------------------

function showAway(away) {
  state.away = away;
  const t = awayText(away);
  const box = $('away');
  box.checked = t.on;
  box.disabled = !can('away');
  const toggle = $('away-toggle');
  toggle.hidden = canKill() && !can('away'); // a viewer or agent token: not theirs to switch
  toggle.title = t.title;
  toggle.dataset.on = t.on ? 'on' : 'off';
  toggle.querySelector('.away-label').textContent = t.label;
}

/** Read the switch from GET /away (after signing in, and whenever the page comes back into view). */
export async function loadAway() {
  $('away-toggle').hidden = canKill() && !can('away');
  try {
    const response = await fetch('away', { cache: 'no-store', headers: { Accept: 'application/json' } });
    if (response.ok) showAway(await response.json());
  } catch {
    // the connection indicator says the server is gone
  }
}

async function putAway(on) {
  let response;
  try {
    response = await fetch('away', {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ on }),
    });
  } catch {
    showAway(state.away);
    return showMessage('The server does not answer; away mode was not changed.');
  }
  if (response.status === 401) {
    showAway(state.away);
    return requireSignIn('Sign in to change away mode.');
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // keep the status
  }
  if (!response.ok) {
    showAway(state.away);
    return showMessage(`Could not change away mode: ${body?.error ?? `HTTP ${response.status}`}`);
  }
  showAway(body);
  showMessage(on ? 'Away mode is on: permission prompts wait for an answer here.' : 'Away mode is off.');
}

let awayTimer = null;

/** loadAway() once shortly, however many prompts were held or released meanwhile (an init brings many). */
export function loadAwaySoon() {
  if (awayTimer !== null) return;
  awayTimer = setTimeout(() => {
    awayTimer = null;
    loadAway();
  }, 250);
}

export function bindAway() {
  const box = $('away');
  box.addEventListener('change', () => putAway(box.checked));
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') loadAway();
  });
}
