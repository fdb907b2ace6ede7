// Starting a Claude Code session from the page: the "New session" button in
// the header opens a form (prompt, directory, name, model, budget, permission
// mode) that POSTs /managed; on 201 the new session's detail opens, on a
// refusal the form shows the API's sentence. The pure parts are managed.js's.

import { mayAct } from './auth.js';
import { act } from './controls.js';
import { $, h } from './dom.js';
import { PERMISSION_MODES, refusal, startBody } from './managed.js';

const CWD_KEY = 'sessionwatch.new.cwd';
const FIELDS = ['prompt', 'cwd', 'name', 'model', 'max_cost_usd', 'permission_mode'];

let opened = () => {};

function field(name) {
  return $(`new-${name.replace(/_/g, '-')}`);
}

function showForm(show) {
  const form = $('new-session');
  form.hidden = !show;
  $('new-session-open').setAttribute('aria-expanded', show ? 'true' : 'false');
  if (show) {
    $('new-error').textContent = '';
    if (!field('cwd').value) field('cwd').value = localStorage.getItem(CWD_KEY) ?? '';
    field('prompt').focus();
  }
}

async function submit(event) {
  event.preventDefault();
  const raw = Object.fromEntries(FIELDS.map((name) => [name, field(name).value]));
  const { body, error } = startBody(raw);
  if (error) {
    $('new-error').textContent = error;
    return;
  }
  const button = $('new-start');
  button.disabled = true;
  $('new-error').textContent = '';
  const r = await act('POST', 'managed', body);
  button.disabled = false;
  if (!r.ok || !r.body || typeof r.body.session_id !== 'string') {
    $('new-error').textContent = refusal('start the session', r.status, r.body);
    return;
  }
  localStorage.setItem(CWD_KEY, body.cwd);
  for (const name of ['prompt', 'name']) field(name).value = '';
  showForm(false);
  opened(r.body.session_id);
}

/** The button follows whether this person may act (signed in, no 403). */
export function refreshNewSession() {
  const allowed = mayAct();
  $('new-session-open').hidden = !allowed;
  if (!allowed) $('new-session').hidden = true;
}

/** Wire the button and the form; `open(id)` shows a started session's detail. */
export function bindNewSession({ open }) {
  opened = open;
  const select = field('permission_mode');
  for (const mode of PERMISSION_MODES) {
    select.append(
      h(
        'option',
        { value: mode },
        mode === 'bypassPermissions' ? 'bypassPermissions (only if the server allows it)' : mode,
      ),
    );
  }
  $('new-session-open').addEventListener('click', () => showForm($('new-session').hidden));
  $('new-cancel').addEventListener('click', () => showForm(false));
  $('new-session').addEventListener('submit', submit);
  refreshNewSession();
}
