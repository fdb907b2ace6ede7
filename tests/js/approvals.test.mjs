// Approvals on the web page, the pure parts (frontend/approvals.js) and the
// needs-approval-first order (frontend/view.js).  Run: node --test tests/js/

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  approvalEntries,
  approveBody,
  approveError,
  awayText,
  canApprove,
  pendingLine,
} from '../../src/sessionwatch/frontend/approvals.js';
import { DEFAULT_VIEW, visibleSessions } from '../../src/sessionwatch/frontend/view.js';
import { session } from './fakes.mjs';

const PENDING = { id: 'p1', kind: 'permission', tool: 'Write', summary: 'Write: note.txt', since: '2026-11-22T08:00:00Z', answerable: true };

test('needs-approval rows come first whatever the sort but status, then the sort as before', () => {
  const list = [
    session('a', { status: 'running', message_count: 9, last_activity: '2026-11-22T08:05:00Z' }),
    session('b', { status: 'needs_approval', message_count: 1, last_activity: '2026-11-22T07:00:00Z', pending: PENDING }),
    session('c', { status: 'waiting', message_count: 5, last_activity: '2026-11-22T08:01:00Z' }),
    session('d', { status: 'needs_approval', message_count: 3, last_activity: '2026-11-22T06:00:00Z' }),
  ];
  const ids = (sort, dir) => visibleSessions(list, { ...DEFAULT_VIEW, sort, dir }).map((s) => s.id);
  assert.deepEqual(ids('last_activity', 'desc'), ['b', 'd', 'a', 'c']);
  assert.deepEqual(ids('message_count', 'desc'), ['d', 'b', 'a', 'c']);
  assert.deepEqual(ids('message_count', 'asc'), ['b', 'd', 'c', 'a']);
  // Sorting by status is the status order itself (model.js), both ways.
  assert.deepEqual(ids('status', 'asc'), ['a', 'b', 'd', 'c']);
  assert.deepEqual(ids('status', 'desc'), ['c', 'b', 'd', 'a']);
  // A filter still filters.
  assert.deepEqual(visibleSessions(list, { ...DEFAULT_VIEW, status: 'running' }).map((s) => s.id), ['a']);
});

test('a pending prompt is shown as its tool and one-line summary', () => {
  assert.equal(pendingLine(PENDING), 'Write: note.txt');
  assert.equal(pendingLine({ ...PENDING, summary: 'note.txt' }), 'Write: note.txt');
  assert.equal(pendingLine({ ...PENDING, summary: '' }), 'Write');
  assert.equal(pendingLine({ kind: 'question', tool: null, summary: '' }), 'a question');
  assert.equal(pendingLine({ kind: 'permission', tool: null, summary: 'rm -rf build' }), 'rm -rf build');
  assert.equal(pendingLine(null), '');
});

test('Approve / Deny only while the server offers "approve" for a pending prompt', () => {
  assert.ok(canApprove(session('a', { status: 'needs_approval', pending: PENDING, controls: ['approve'] })));
  assert.ok(!canApprove(session('a', { status: 'needs_approval', pending: PENDING, controls: [] })), 'shown, not held: away mode off');
  assert.ok(!canApprove(session('a', { status: 'running', pending: null, controls: ['approve'] })));
  assert.ok(!canApprove(session('a', { pending: PENDING })), 'no controls field');
  assert.ok(!canApprove(null));
});

test('the approve body: pending id, decision, and a deny message only when given', () => {
  assert.deepEqual(approveBody('p1', 'allow'), { pending_id: 'p1', decision: 'allow' });
  assert.deepEqual(approveBody('p1', 'allow', 'ignored'), { pending_id: 'p1', decision: 'allow' });
  assert.deepEqual(approveBody('p1', 'deny', '  not today '), { pending_id: 'p1', decision: 'deny', message: 'not today' });
  assert.deepEqual(approveBody('p1', 'deny', ''), { pending_id: 'p1', decision: 'deny' });
  assert.deepEqual(approveBody('p1', 'deny', null), { pending_id: 'p1', decision: 'deny' });
  assert.throws(() => approveBody('p1', 'maybe'));
});

test("a failed answer shows the API's own sentence, else the status", () => {
  const sentence = 'that prompt is no longer pending (already answered: deny)';
  assert.equal(approveError(409, { error: sentence }), `Could not answer the prompt: ${sentence}`);
  assert.equal(approveError(502, null), 'Could not answer the prompt: HTTP 502');
  assert.equal(approveError(400, { error: '' }), 'Could not answer the prompt: HTTP 400');
});

test('recorded decisions: who, when, from where, decision, message, tool; newest first', () => {
  const by = { who: 'local', address: '127.0.0.1', origin: 'http://127.0.0.1:8765', user_agent: 'x' };
  const detail = {
    approvals: [
      { pending_id: 'p1', decision: 'allow', message: null, tool: 'Write', summary: 'Write: a.txt', decided_at: 1_795_000_000, by },
      { pending_id: 'p2', decision: 'deny', message: 'not today', tool: 'Bash', summary: 'Bash: rm -rf /', decided_at: 1_795_000_060.5, by: { who: 'admin', address: null, origin: null } },
    ],
  };
  const [second, first] = approvalEntries(detail);
  assert.deepEqual(first, {
    decision: 'allowed',
    tool: 'Write',
    summary: 'Write: a.txt',
    message: '',
    who: 'local',
    when: new Date(1_795_000_000_000).toISOString(),
    where: '127.0.0.1, http://127.0.0.1:8765',
  });
  assert.equal(second.decision, 'denied');
  assert.equal(second.message, 'not today');
  assert.equal(second.who, 'admin');
  assert.equal(second.where, '');
  assert.deepEqual(approvalEntries({}), []);
  assert.deepEqual(approvalEntries(null), []);
});

test('the away switch says its state, who set it, and how many prompts wait', () => {
  const off = awayText({ on: false, changed_at: null, by: null, approval_wait_s: 600, waiting: [] });
  assert.equal(off.on, false);
  assert.equal(off.label, 'Away');
  assert.match(off.title, /off/);
  const on = awayText({ on: true, changed_at: 1_795_000_000, by: { who: 'local' }, approval_wait_s: 600, waiting: [{}, {}] });
  assert.equal(on.on, true);
  assert.equal(on.label, 'Away (2 waiting)');
  assert.match(on.title, /on: permission prompts wait up to 600 s/);
  assert.match(on.title, /set by local/);
  assert.equal(awayText(null).on, false);
});
