// Sign-in: whether the server needs its token, the sign-in form that trades
// it for an HttpOnly cookie, sign-out, and noticing a sign-in that expired.
// What happens to the rest of the page on either side is main.js's, through
// onAuthChange(). The token's role (GET /auth, POST /login) decides which
// controls the page shows: can(action).

import { $ } from './dom.js';
import { state } from './state.js';

const hooks = { signedIn: () => {}, signedOut: () => {}, forbidden: () => {} };

/**
 * `signedIn()` runs once the page may read (start the connection),
 * `signedOut()` once it may not, `forbidden()` once the server refused this
 * person's token an action (403: a role that only reads).
 */
export function onAuthChange({ signedIn, signedOut, forbidden = () => {} }) {
  hooks.signedIn = signedIn;
  hooks.signedOut = signedOut;
  hooks.forbidden = forbidden;
}

/** Signed in, or the server needs no token. */
export function canKill() {
  return !(state.auth.token_required && !state.auth.authenticated);
}

/** Whether this person may act on sessions: signed in, and no 403 for their token (nor a reading role from /auth). */
export function mayAct() {
  return canKill() && !state.forbidden && can('message');
}

/** The server refused an action with 403: hide what this token cannot do (until the next sign-in). */
export function forbid() {
  if (state.forbidden) return;
  state.forbidden = true;
  hooks.forbidden();
}

// Roles are cumulative (DESIGN.md, Security); the role each action needs is
// the role of its route (server/auth.py ROUTE_ROLES).
const ROLES = ['viewer', 'agent', 'operator', 'admin'];
const NEEDS = {
  read: 'viewer',
  logs: 'viewer',
  approve: 'operator',
  away: 'operator',
  budget: 'operator',
  kill: 'operator',
  refresh: 'operator',
  start: 'operator',
  message: 'operator',
  interrupt: 'operator',
  stop: 'operator',
  resume: 'operator',
  delete: 'operator', // a managed session (a Panel one deregisters itself, agent)
};

/** The signed-in token's role ("admin" when the server needs no token), or null. */
export function role() {
  if (!canKill()) return null;
  return state.auth.role ?? (state.auth.token_required ? null : 'admin');
}

/** Whether the signed-in token may do `action` ("approve", "kill", "away", "budget", "stop", ...):
 * the page hides what it may not. An action not listed needs admin. */
export function can(action) {
  const r = role();
  return r !== null && ROLES.indexOf(r) >= ROLES.indexOf(NEEDS[action] ?? 'admin');
}

function authOf(answer) {
  return {
    token_required: Boolean(answer.token_required),
    authenticated: Boolean(answer.authenticated),
    role: answer.role ?? null,
    name: answer.name ?? null,
  };
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

/** After a failed stream: a token may now be needed, or the sign-in expired (an EventSource cannot see a 401, /auth can). */
export async function checkAuthAfterFailure() {
  const auth = await fetchAuth();
  if (auth && auth.token_required && !auth.authenticated) {
    requireSignIn(
      state.auth.token_required ? 'Your sign-in has expired. Enter the token again.' : 'This server now needs its access token.',
    );
  }
}

export function requireSignIn(message = '') {
  state.auth = { token_required: true, authenticated: false, role: null, name: null };
  $('signin').hidden = false;
  $('signin-error').textContent = message;
  $('signout').hidden = true;
  hooks.signedOut();
  $('token').focus();
}

function signedIn() {
  state.forbidden = false;
  $('signin').hidden = true;
  $('signin-error').textContent = '';
  $('signout').hidden = !state.auth.token_required;
  hooks.signedIn();
}

function bindForm() {
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
      let who = {};
      try {
        who = await response.json();
      } catch {
        // no role said: fetchAuth() below tells
      }
      state.auth = { token_required: true, authenticated: true, role: who.role ?? null, name: who.name ?? null };
      if (state.auth.role === null) {
        const auth = await fetchAuth();
        if (auth) state.auth = authOf(auth);
      }
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

/** Bind the form, ask the server whether it needs the token, then sign in or show the form. */
export async function startAuth() {
  bindForm();
  const auth = await fetchAuth();
  if (auth) state.auth = authOf(auth);
  if (state.auth.token_required && !state.auth.authenticated) requireSignIn();
  else signedIn();
}
