// Acting on a managed session from its detail panel: the message box (POST
// /sessions/{id}/messages), Interrupt / Stop / Resume / Delete, Approve / Deny
// of a pending `can_use_tool` request (approve.js's buttons), and the
// conversation (conversation.js) below them. Every button follows the
// session's `controls`; none shows for a person the server refused (401 / 403);
// a refused request shows the API's sentence. The pure parts are managed.js's.

import { pendingLine } from './approvals.js';
import { approveButtons } from './approve.js';
import { forbid, mayAct, requireSignIn } from './auth.js';
import { h, showMessage } from './dom.js';
import { Conversation } from './conversation.js';
import { cost } from './format.js';
import { managedControls, refusal } from './managed.js';

/**
 * Send a JSON request for an action; {ok, status, body}. 401 asks for the
 * token again, 403 hides what this token cannot do; the caller shows
 * `refusal(...)` for any other refusal.
 */
export async function act(method, path, body = undefined) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    return { ok: false, status: 0, body: { error: 'the server does not answer' } };
  }
  let answer = null;
  try {
    answer = await response.json();
  } catch {
    // not JSON: the status says enough
  }
  if (response.status === 401) requireSignIn('Sign in to act on sessions.');
  if (response.status === 403) forbid();
  return { ok: response.ok, status: response.status, body: answer };
}

/** The managed part of the detail panel: made once per opened session, updated in place as the session changes. */
export class ManagedPanel {
  constructor(id, { onDeleted = () => {} } = {}) {
    this.id = id;
    this.session = null;
    this.onDeleted = onDeleted;
    this.conversation = new Conversation(id);
    this.head = h('p', { class: 'managed-head' });
    this.pending = h('div', { class: 'managed-pending', hidden: true });
    this.buttons = h('div', { class: 'managed-buttons detail-actions' });
    this.text = h('textarea', {
      class: 'managed-text',
      rows: 3,
      placeholder: 'Message to Claude (Ctrl+Enter sends)',
      'aria-label': 'Message to Claude',
      onkeydown: (event) => {
        if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
          event.preventDefault();
          this.send();
        }
      },
    });
    this.sendButton = h('button', { type: 'submit', class: 'send' }, 'Send');
    this.box = h(
      'form',
      {
        class: 'managed-send',
        hidden: true,
        onsubmit: (event) => {
          event.preventDefault();
          this.send();
        },
      },
      this.text,
      this.sendButton,
    );
    this.error = h('p', { class: 'error managed-error', role: 'alert' });
    this.el = h(
      'section',
      { class: 'managed', dataset: { session: id }, 'aria-label': 'Managed session' },
      this.head,
      this.pending,
      this.buttons,
      this.box,
      this.error,
      this.conversation.el,
    );
    this.conversation.start();
    this.key = null;
  }

  close() {
    this.conversation.stop();
  }

  /** Draw the session's state: the head line, the pending request, the buttons its `controls` allow. */
  update(session) {
    this.session = session;
    const m = session.managed ?? {};
    const kind = m.kind === 'run' ? 'run' : 'managed';
    const spent = typeof m.total_cost_usd === 'number' ? m.total_cost_usd : session.cost_usd;
    const cap = typeof m.max_cost_usd === 'number' ? ` of ${cost(m.max_cost_usd)}` : '';
    this.head.replaceChildren(
      h('span', { class: 'managed-name' }, m.name ?? session.id),
      ' ',
      h('span', { class: `managed-kind kind-${kind}` }, kind),
      ' ',
      h('span', { class: `managed-state state-${m.state}` }, String(m.state ?? '')),
      ` · ${cost(spent)}${cap} · ${m.num_turns ?? 0} turn${m.num_turns === 1 ? '' : 's'}`,
    );
    this.el.dataset.state = String(m.state ?? '');
    const allowed = mayAct();
    const c = managedControls(session, allowed);
    const key = JSON.stringify([session.pending?.id ?? null, session.controls ?? [], allowed]);
    if (key === this.key) return;
    this.key = key;
    // Approve / Deny inline, the page's usual buttons (approve.js).
    const answers = c.approve ? approveButtons(session) : null;
    this.pending.hidden = !answers;
    this.pending.replaceChildren(
      ...(answers ? [h('span', { class: 'managed-asks' }, 'Claude asks: ', h('strong', {}, pendingLine(session.pending))), ' ', answers] : []),
    );
    this.buttons.replaceChildren(
      ...c.buttons.map((a) =>
        h(
          'button',
          { type: 'button', class: `managed-action action-${a.control}`, dataset: { control: a.control }, title: a.title, onclick: (e) => this.action(a.control, e.currentTarget) },
          a.label,
        ),
      ),
    );
    this.box.hidden = !c.box;
    this.sendButton.hidden = !c.send;
    this.sendButton.disabled = false;
  }

  showError(text) {
    this.error.textContent = text;
    if (text) showMessage(text);
  }

  async send() {
    const text = this.text.value;
    if (!text.trim()) return this.showError('Write a message first.');
    this.sendButton.disabled = true;
    const r = await act('POST', `sessions/${encodeURIComponent(this.id)}/messages`, { text });
    this.sendButton.disabled = false;
    if (!r.ok) return this.showError(refusal('send the message', r.status, r.body));
    this.text.value = '';
    this.showError('');
  }

  async action(control, button) {
    const path = `sessions/${encodeURIComponent(this.id)}`;
    let r;
    if (control === 'delete') {
      const name = this.session?.managed?.name ?? this.id;
      if (!window.confirm(`Delete ${name}? Its record and logs are forgotten.`)) return;
      if (button) button.disabled = true;
      r = await act('DELETE', path);
    } else if (control === 'resume') {
      const text = this.text.value.trim() ? this.text.value : null;
      if (button) button.disabled = true;
      r = await act('POST', `${path}/resume`, text ? { text } : {});
      if (r.ok && text) this.text.value = '';
    } else {
      if (button) button.disabled = true;
      r = await act('POST', `${path}/${control}`, {});
    }
    if (button) button.disabled = false;
    if (!r.ok) return this.showError(refusal(`${control} the session`, r.status, r.body));
    this.showError('');
    if (control === 'delete') this.onDeleted(this.id);
  }
}
