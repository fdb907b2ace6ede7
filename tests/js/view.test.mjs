// Formatting, search/filter/sort, totals, URL state and notifications of the
// dashboard: the pure parts, without a browser.  Run: node --test tests/js/

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  compactNumber,
  cost,
  duration,
  relativeTime,
  safeHttpUrl,
  shortModel,
  shortProject,
  totalTokens,
} from '../../src/sessionwatch/frontend/format.js';
import { notificationFor } from '../../src/sessionwatch/frontend/notify.js';
import {
  COLUMNS,
  DEFAULT_VIEW,
  matches,
  parseView,
  statusNote,
  totals,
  viewQuery,
  visibleSessions,
} from '../../src/sessionwatch/frontend/view.js';
import { session } from './fakes.mjs';

const T0 = Date.parse('2025-06-01T12:00:00Z');

test('relative time ticks in seconds, minutes, hours, days', () => {
  const at = (s) => relativeTime('2025-06-01T12:00:00Z', T0 + s * 1000);
  assert.equal(at(0), 'just now');
  assert.equal(at(12), '12 s ago');
  assert.equal(at(59), '59 s ago');
  assert.equal(at(60), '1 min ago');
  assert.equal(at(3 * 3600), '3 h ago');
  assert.equal(at(5 * 86400), '5 d ago');
  assert.equal(relativeTime(null, T0), '—');
  assert.equal(relativeTime('not a date', T0), '—');
});

test('numbers, money, durations, names', () => {
  assert.equal(compactNumber(950), '950');
  assert.equal(compactNumber(12345), '12.3k');
  assert.equal(compactNumber(1_000), '1k');
  assert.equal(compactNumber(15_400_000), '15.4M');
  assert.equal(cost(null), '—');
  assert.equal(cost(0.004), '<$0.01');
  assert.equal(cost(12.345), '$12.35');
  assert.equal(duration(45), '45s');
  assert.equal(duration(3600 + 5 * 60), '1h 05m');
  assert.equal(duration(-1), '—');
  assert.equal(totalTokens({ input: 1, output: 2, cache_creation: 3, cache_read: 4 }), 10);
  assert.equal(totalTokens(null), 0);
  assert.equal(shortProject('/home/me/src/app'), 'app');
  assert.equal(shortProject('forecast-app'), 'forecast-app');
  assert.equal(shortModel('claude-sonnet-4-5-20250929'), 'sonnet-4-5');
  assert.equal(shortModel(null), '—');
});

test('only http(s) links are made from session URLs', () => {
  assert.equal(safeHttpUrl('http://localhost:5006/app'), 'http://localhost:5006/app');
  assert.equal(safeHttpUrl('javascript:alert(1)'), null);
  assert.equal(safeHttpUrl('data:text/html,hi'), null);
  assert.equal(safeHttpUrl('not a url'), null);
});

test('search looks at project, title and branch; every word must match', () => {
  const s = session('a', { project: '/home/me/spotter', title: 'Fix login', git_branch: 'feature/auth' });
  const view = (q) => ({ ...DEFAULT_VIEW, q });
  assert.ok(matches(s, view('spotter')));
  assert.ok(matches(s, view('LOGIN')));
  assert.ok(matches(s, view('auth spotter')));
  assert.ok(!matches(s, view('auth billing')));
  assert.ok(matches(s, { ...DEFAULT_VIEW, source: 'claude', status: 'running' }));
  assert.ok(!matches(s, { ...DEFAULT_VIEW, source: 'panel' }));
  assert.ok(!matches(s, { ...DEFAULT_VIEW, status: 'idle' }));
});

test('the Host filter keeps one machine\'s sessions and round-trips through the query string', () => {
  const here = session('a', { host: 'alpha' });
  const there = session('b', { host: 'beta' });
  const view = { ...DEFAULT_VIEW, host: 'alpha' };
  assert.deepEqual(visibleSessions([here, there], view).map((s) => s.id), ['a']);
  assert.ok(!matches(session('c', { host: null }), view));
  assert.equal(viewQuery(view), '?host=alpha');
  assert.deepEqual(parseView('?host=alpha'), view);
});

test('sorting by any column, both ways, ties broken by id', () => {
  const list = [
    session('b', { message_count: 5, status: 'idle', cost_usd: null }),
    session('a', { message_count: 5, status: 'running', cost_usd: 2 }),
    session('c', { message_count: 9, status: 'waiting', cost_usd: 1 }),
  ];
  const ids = (sort, dir) => visibleSessions(list, { ...DEFAULT_VIEW, sort, dir }).map((s) => s.id);
  assert.deepEqual(ids('message_count', 'desc'), ['c', 'a', 'b']);
  assert.deepEqual(ids('message_count', 'asc'), ['a', 'b', 'c']);
  assert.deepEqual(ids('status', 'asc'), ['a', 'c', 'b']);
  assert.deepEqual(ids('cost_usd', 'desc'), ['a', 'c', 'b']);
});

test('the view round-trips through the query string, defaults left out', () => {
  assert.equal(viewQuery(DEFAULT_VIEW), '');
  const view = { ...DEFAULT_VIEW, q: 'a b', source: 'panel', status: 'stale', sort: 'cost_usd', dir: 'asc' };
  const query = viewQuery(view);
  assert.equal(query, '?q=a+b&source=panel&status=stale&sort=cost_usd&dir=asc');
  assert.deepEqual(parseView(query), view);
  // Nonsense in a shared link falls back to defaults instead of breaking the page.
  assert.deepEqual(parseView('?source=evil&status=x&sort=__proto__&dir=up'), DEFAULT_VIEW);
});

test('totals count sessions by status and add tokens and cost, today and all', () => {
  const now = Date.parse('2025-06-01T15:00:00');
  const list = [
    session('a', { status: 'running', last_activity: new Date(now - 60_000).toISOString(), cost_usd: 1.5, tokens: { input: 10, output: 5, cache_creation: 0, cache_read: 0 } }),
    session('b', { status: 'waiting', last_activity: new Date(now - 3 * 86400_000).toISOString(), cost_usd: 2, tokens: { input: 100, output: 0, cache_creation: 0, cache_read: 0 } }),
    session('c', { source: 'panel', status: 'stale', last_activity: new Date(now).toISOString(), cost_usd: null }),
  ];
  const t = totals(list, now);
  assert.deepEqual(t.byStatus, { running: 1, needs_approval: 0, waiting: 1, idle: 0, stale: 1, ended: 0, failed: 0 });
  assert.deepEqual(t.today, { sessions: 2, tokens: 15, cost: 1.5 });
  assert.deepEqual(t.all, { sessions: 3, tokens: 115, cost: 3.5 });
});

test('notify when Claude goes from running to waiting, and when a Panel session goes stale', () => {
  const running = session('a', { status: 'running', project: '/home/me/api', title: 'Add tests' });
  const waiting = { ...running, status: 'waiting' };
  const n = notificationFor(running, waiting);
  assert.equal(n.title, 'Claude is waiting in api');
  assert.equal(n.body, 'Add tests');
  assert.equal(notificationFor(waiting, waiting), null);
  assert.equal(notificationFor({ ...running, status: 'idle' }, waiting), null);
  assert.equal(notificationFor(running, { ...running, status: 'idle' }), null);

  const panel = session('p', { source: 'panel', project: 'forecast', status: 'running', user: 'ana' });
  assert.equal(notificationFor(panel, { ...panel, status: 'stale' }).title, 'Panel session stale: forecast');
  assert.equal(notificationFor(panel, { ...panel, status: 'idle' }), null);
  assert.equal(notificationFor(null, panel), null, 'a new session is not a transition');
});

// What the search box means, shared with the Panel dashboard (tests/test_dashboard.py).
import { readFileSync } from 'node:fs';

const SEARCH = JSON.parse(readFileSync(new URL('../vectors/search.json', import.meta.url), 'utf8'));

test('search follows the shared vectors', () => {
  for (const { q, match } of SEARCH.cases) {
    assert.equal(matches(SEARCH.session, { ...DEFAULT_VIEW, q }), match, JSON.stringify(q));
  }
});

test('the status note: a pending prompt says what it asks, else the status reason', () => {
  const pending = { id: 'p1', kind: 'permission', tool: 'Write', summary: 'Write: note.txt', since: '2026-01-01T00:00:00Z', answerable: false };
  assert.equal(statusNote(session('a', { status: 'needs_approval', status_reason: 'permission: Write', pending })), 'Write: note.txt');
  assert.equal(statusNote(session('a', { status: 'needs_approval', pending: { ...pending, summary: '' } })), 'Write');
  assert.equal(statusNote(session('a', { status: 'ended', status_reason: 'process exited' })), 'process exited');
  assert.equal(statusNote(session('a', { status: 'waiting' })), '');
  assert.equal(COLUMNS.find((c) => c.key === 'status').note, statusNote);
});
