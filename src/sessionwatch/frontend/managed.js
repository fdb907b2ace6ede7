// Managed sessions and runs, the pure parts: what the conversation view shows
// of a session's log lines (with the cost of each turn), which buttons a
// session offers, the body of POST /managed from the form's fields, the
// sentence of a refused request, the LIVE banner's runs and the table's
// marker. No DOM; conversation.js, controls.js, newsession.js and banner.js
// draw and send.

import { cost } from './format.js';

/** A managed session's or a run's states with a process (or a run) alive (`managed.state`, not a status). */
export const LIVE_STATES = Object.freeze('starting running waiting'.split(' '));

/** The permission modes the form offers (bypassPermissions only works where the server allows it). */
export const PERMISSION_MODES = Object.freeze(['default', 'acceptEdits', 'plan', 'bypassPermissions']);

/** The buttons of a managed session, in the order they are drawn, with their words. */
export const ACTIONS = Object.freeze([
  { control: 'interrupt', label: 'Interrupt', title: 'End the current turn; the session waits for a message' },
  { control: 'stop', label: 'Stop', title: "Stop the session's process (it can be resumed)" },
  { control: 'resume', label: 'Resume', title: 'Start the stopped session again (with the message box text, if any)' },
  { control: 'delete', label: 'Delete', title: 'Forget this session and its logs' },
]);

/** Whether the session was started by sessionwatch (a managed session) or reports as a `sessionwatch run`. */
export function isManaged(session) {
  return Boolean(session && session.managed && typeof session.managed === 'object');
}

/** The table's marker of a managed row: its name ("run · name" for a run), or '' for others. */
export function managedMarker(session) {
  if (!isManaged(session)) return '';
  const name = typeof session.managed.name === 'string' && session.managed.name ? session.managed.name : 'managed';
  return session.managed.kind === 'run' ? `run · ${name}` : name;
}

/** Whether the session is a `sessionwatch run` that is alive (the LIVE banner's). */
export function isLiveRun(session) {
  return isManaged(session) && session.managed.kind === 'run' && LIVE_STATES.includes(session.managed.state);
}

/**
 * The LIVE banner's entries, one per live run, by name:
 * [{id, name, state, cost: "$0.12" | "—", turns: 3}].
 */
export function liveRuns(sessions) {
  const out = [];
  for (const s of sessions) {
    if (!isLiveRun(s)) continue;
    const m = s.managed;
    const usd = typeof m.total_cost_usd === 'number' ? m.total_cost_usd : s.cost_usd;
    out.push({
      id: s.id,
      name: typeof m.name === 'string' && m.name ? m.name : s.id,
      state: m.state,
      cost: cost(usd),
      turns: typeof m.num_turns === 'number' ? m.num_turns : 0,
    });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.id < b.id ? -1 : 1));
}

/** One banner entry as words: "nightly-fix: $0.12, 3 turns". */
export function liveRunText(run) {
  return `${run.name}: ${run.cost}, ${run.turns} turn${run.turns === 1 ? '' : 's'}`;
}

/**
 * What the page may do to the session now, as the server says in `controls`,
 * and only when this person may act at all (`mayAct`: signed in, and no 401 /
 * 403 for their token):
 * {send, approve, buttons: [ACTIONS entries]}.
 */
export function managedControls(session, mayAct) {
  const controls = mayAct && isManaged(session) && Array.isArray(session.controls) ? session.controls : [];
  return {
    send: controls.includes('send'),
    approve: controls.includes('approve') && Boolean(session?.pending),
    // Resume takes the message box's text too: the box shows while a session can be resumed.
    box: controls.includes('send') || controls.includes('resume'),
    buttons: ACTIONS.filter((a) => controls.includes(a.control)),
  };
}

/** A log line's cost as a number, or null. */
function usd(line) {
  return typeof line.cost_usd === 'number' && Number.isFinite(line.cost_usd) ? line.cost_usd : null;
}

/** A process started (the manager's "started: …" line): its `result` costs count from 0 again. */
function processStart(line) {
  return line.kind === 'system' && line.source === 'system' && typeof line.content === 'string' && line.content.startsWith('started:');
}

/**
 * The cost of each turn, by the `result` line's id: the difference between
 * successive `result` lines' `cost_usd` (the process's running total). A new
 * process (a resumed session) starts its total again from 0; a total that went
 * down means the same.
 */
export function turnCosts(lines) {
  const out = new Map();
  let before = 0;
  for (const line of lines) {
    if (processStart(line)) before = 0;
    if (line.kind !== 'result') continue;
    const total = usd(line);
    if (total === null) continue;
    const turn = total >= before ? total - before : total;
    out.set(line.id, Math.round(turn * 1e6) / 1e6);
    before = total;
  }
  return out;
}

/** How a permission line reads: "asks", "allowed" or "denied" (its first word). */
export function permissionKind(content) {
  const text = String(content ?? '');
  if (text.startsWith('asks')) return 'asks';
  if (text.startsWith('allowed')) return 'allowed';
  if (text.startsWith('denied')) return 'denied';
  return 'other';
}

/** A log line's kind → who the conversation says it is from. */
const WHO = Object.freeze({ prompt: 'You', reply: 'Claude', tool: 'Tool', result: 'Turn', permission: 'Permission', system: 'System', raw: 'Raw' });

/** The log lines' kinds the conversation knows (tests/test_frontend_managed.py holds them to the server's). */
export const LOG_KINDS = Object.freeze(Object.keys(WHO));

/**
 * The conversation view's items from log lines (in id order): {id, kind, who,
 * text, tool, level, ts (ISO), turnCost ("$0.0015" for a result), decision
 * (for a permission line)}. Raw lines only with `showRaw`.
 */
export function conversationItems(lines, { showRaw = false } = {}) {
  const costs = turnCosts(lines);
  const items = [];
  for (const line of lines) {
    const kind = typeof line.kind === 'string' && line.kind in WHO ? line.kind : 'raw';
    if (kind === 'raw' && !showRaw) continue;
    const item = {
      id: line.id,
      kind,
      who: WHO[kind],
      text: typeof line.content === 'string' ? line.content : '',
      tool: typeof line.tool_name === 'string' ? line.tool_name : '',
      level: typeof line.level === 'string' ? line.level : 'info',
      ts: typeof line.ts === 'number' ? new Date(line.ts * 1000).toISOString() : '',
      turnCost: null,
      decision: null,
    };
    if (kind === 'result' && costs.has(line.id)) item.turnCost = turnCostText(costs.get(line.id));
    if (kind === 'permission') item.decision = permissionKind(item.text);
    items.push(item);
  }
  return items;
}

/** A turn's cost, precise enough to tell turns apart: "$0.0015", "$1.23". */
export function turnCostText(value) {
  if (typeof value !== 'number' || !Number.isFinite(value)) return '—';
  return value >= 1 ? `$${value.toFixed(2)}` : `$${value.toFixed(4)}`;
}

/**
 * Merge newly arrived log lines into the ones held, by id, in id order, without
 * duplicates (a reconnect may send a line again); keep at most `max` (the newest).
 */
export function mergeLines(held, arrived, max = 5000) {
  if (!arrived.length) return held;
  const last = held.length ? held[held.length - 1].id : -Infinity;
  let out;
  if (arrived.every((l) => l.id > last) && arrived.every((l, i) => i === 0 || l.id > arrived[i - 1].id)) {
    out = held.concat(arrived);
  } else {
    const byId = new Map(held.map((l) => [l.id, l]));
    for (const l of arrived) byId.set(l.id, l);
    out = [...byId.values()].sort((a, b) => a.id - b.id);
  }
  return out.length > max ? out.slice(out.length - max) : out;
}

/** The URL that follows a session's logs after `after` (0: from the start). */
export function followUrl(id, after) {
  return `sessions/${encodeURIComponent(id)}/logs?follow=1&after=${Math.max(0, Math.floor(after || 0))}`;
}

/**
 * POST /managed's body from the form's raw fields (strings), or {error} with
 * the sentence to show before sending anything. Empty optional fields are left
 * out (the server's defaults apply).
 */
export function startBody(fields) {
  const text = (key) => (typeof fields[key] === 'string' ? fields[key].trim() : '');
  const prompt = typeof fields.prompt === 'string' ? fields.prompt : '';
  if (!prompt.trim()) return { error: 'Write the first prompt.' };
  const cwd = text('cwd');
  if (!cwd) return { error: 'Give the directory the session works in (an absolute path).' };
  const body = { prompt, cwd };
  if (text('name')) body.name = text('name');
  if (text('model')) body.model = text('model');
  if (text('max_cost_usd')) {
    const value = Number(text('max_cost_usd'));
    if (!Number.isFinite(value) || value < 0) return { error: 'The budget must be a number of dollars, 0 or more.' };
    body.max_cost_usd = value;
  }
  const mode = text('permission_mode');
  if (mode && mode !== 'default') body.permission_mode = mode;
  return { body };
}

/** The sentence to show for a refused request: "Could not stop the session: <the API's sentence>". */
export function refusal(what, status, body) {
  const error = body && typeof body.error === 'string' && body.error ? body.error : `HTTP ${status}`;
  return `Could not ${what}: ${error}`;
}

/**
 * The recorded actions of GET /sessions/{id} ("actions": who started, sent,
 * stopped…), newest first: [{action, detail, who, when (ISO), where}].
 */
export function actionEntries(detail) {
  const list = Array.isArray(detail?.actions) ? detail.actions : [];
  return list
    .map((a) => {
      const by = a && typeof a.by === 'object' && a.by ? a.by : {};
      return {
        action: String(a?.action ?? ''),
        detail: typeof a?.detail === 'string' ? a.detail : '',
        who: typeof by.who === 'string' && by.who ? by.who : 'unknown',
        when: typeof a?.at === 'number' ? new Date(a.at * 1000).toISOString() : String(a?.at ?? ''),
        where: [by.address, by.origin].filter((v) => typeof v === 'string' && v).join(', '),
      };
    })
    .reverse();
}
