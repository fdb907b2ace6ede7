// Notifications that say which session and what it wants (frontend/notify.js):
// the session's title and project, the tool, a link to its detail, and quiet
// for the session the person is looking at.  Run: node --test tests/js/

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { detailQuery, notificationFor } from '../../src/sessionwatch/frontend/notify.js';
import { DEFAULT_VIEW, parseView } from '../../src/sessionwatch/frontend/view.js';
import { session } from './fakes.mjs';

const PENDING = { id: 'p1', kind: 'permission', tool: 'Bash', summary: 'Bash: npm publish', since: '2026-11-22T08:00:00Z', answerable: true };
const running = session('s1', { status: 'running', project: '/home/ann/shop', title: 'Release 2.0' });
const asking = { ...running, status: 'needs_approval', status_reason: 'permission: Bash', pending: PENDING, controls: ['approve'] };

test('needs approval: names the tool, the project and the session, and links to its detail', () => {
  const n = notificationFor(running, asking);
  assert.equal(n.title, 'Bash needs approval in shop');
  assert.equal(n.body, 'Release 2.0\nBash: npm publish');
  assert.equal(n.tag, 'sessionwatch-s1');
  assert.equal(n.url, '?session=s1');
  assert.equal(parseView(n.url).session, 's1', 'the URL state the page opens the detail from');
});

test('the link keeps the rest of the view (search, filters, sort)', () => {
  const view = { ...DEFAULT_VIEW, q: 'shop', sort: 'cost_usd', session: 'other' };
  const n = notificationFor(running, asking, { view });
  assert.equal(n.url, '?q=shop&sort=cost_usd&session=s1');
  assert.equal(detailQuery('a b'), '?session=a+b');
});

test('quiet for the session the person is looking at, not for the others', () => {
  assert.equal(notificationFor(running, asking, { looking: 's1' }), null);
  assert.notEqual(notificationFor(running, asking, { looking: 's2' }), null);
  const waiting = { ...running, status: 'waiting' };
  assert.equal(notificationFor(running, waiting, { looking: 's1' }), null);
  assert.equal(notificationFor(running, waiting, { looking: 's2' }).title, 'Claude is waiting in shop');
});

test('one notification per prompt: an update of the same prompt is quiet, a new prompt is not', () => {
  assert.equal(notificationFor(asking, { ...asking, cost_usd: 1 }), null);
  assert.equal(notificationFor(asking, { ...asking, controls: [] }), null, 'held → only shown');
  const next = { ...asking, pending: { ...PENDING, id: 'p2', tool: 'Write', summary: 'Write: CHANGELOG.md' } };
  assert.equal(notificationFor(asking, next).title, 'Write needs approval in shop');
});

test('a question, and a prompt the server does not detail, still say which session', () => {
  const q = { ...asking, pending: { id: 'q1', kind: 'question', tool: null, summary: '' } };
  assert.equal(notificationFor(running, q).title, 'A question needs approval in shop');
  const bare = { ...asking, pending: null, status_reason: 'permission: Edit' };
  const n = notificationFor(running, bare);
  assert.equal(n.title, 'A tool call needs approval in shop');
  assert.equal(n.body, 'Release 2.0\npermission: Edit');
  const untitled = { ...asking, title: null };
  assert.equal(notificationFor(running, untitled).body, 'Bash: npm publish');
});

test('failed says why; ended and idle stay quiet', () => {
  const failed = { ...running, status: 'failed', status_reason: 'API error: overloaded' };
  const n = notificationFor(running, failed);
  assert.equal(n.title, 'Claude failed in shop');
  assert.equal(n.body, 'Release 2.0\nAPI error: overloaded');
  assert.equal(notificationFor(running, { ...running, status: 'ended' }), null);
  assert.equal(notificationFor(running, { ...running, status: 'idle' }), null);
  assert.equal(notificationFor(null, asking), null, 'a new session is not a transition');
});
