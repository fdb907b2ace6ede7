// Managed sessions on the web page, the pure parts (frontend/managed.js):
// cost per turn, the conversation's items, which buttons show, the LIVE
// banner's runs, the form's body.  Run: node --test tests/js/

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  actionEntries,
  conversationItems,
  followUrl,
  isLiveRun,
  liveRunText,
  liveRuns,
  managedControls,
  managedMarker,
  mergeLines,
  refusal,
  startBody,
  turnCosts,
} from '../../src/sessionwatch/frontend/managed.js';
import { DEFAULT_VIEW, matches, visibleSessions } from '../../src/sessionwatch/frontend/view.js';
import { session } from './fakes.mjs';

const line = (id, kind, content, extra = {}) => ({ id, ts: 1763798400 + id, level: 'info', source: 'stdout', kind, content, tool_name: null, cost_usd: null, ...extra });
const started = (id) => line(id, 'system', 'started: -p --input-format stream-json', { source: 'system' });
const result = (id, usd) => line(id, 'result', `turn ended: 1 turns, 0.2 s, $${usd} so far`, { cost_usd: usd });

const managed = (id, m, extra = {}) =>
  session(id, { managed: { name: id, state: 'waiting', pid: 1, max_cost_usd: 10, exit_code: null, kind: 'server', total_cost_usd: null, num_turns: 0, duration_ms: null, ...m }, ...extra });

test('the cost of each turn is the difference of successive result totals, from 0 again for a new process', () => {
  const lines = [started(1), line(2, 'prompt', 'hi'), result(3, 0.0015), line(4, 'prompt', 'again'), result(5, 0.004), started(6), result(7, 0.001), result(8, 0.0009), line(9, 'result', 'turn failed')];
  assert.deepEqual([...turnCosts(lines)], [[3, 0.0015], [5, 0.0025], [7, 0.001], [8, 0.0009]]);
  // a run reporting its lines without a start line: the first total is the first turn
  assert.deepEqual([...turnCosts([result(1, 0.12), result(2, 0.3)])], [[1, 0.12], [2, 0.18]]);
});

test('conversation items: kinds, who, turn cost, permission decisions, raw lines only when asked', () => {
  const lines = [
    started(1),
    line(2, 'prompt', 'write a note', { source: 'stdin' }),
    line(3, 'raw', '{"type":"stream_event"}', { level: 'debug' }),
    line(4, 'tool', 'Write: note.txt', { tool_name: 'Write' }),
    line(5, 'permission', 'asks: Write: note.txt', { level: 'warn', tool_name: 'Write' }),
    line(6, 'permission', 'allowed by local: Write: note.txt', { source: 'stdin' }),
    line(7, 'reply', '<b>done</b>'),
    result(8, 0.0123),
    line(9, 'mystery', 'from a newer server'),
  ];
  const items = conversationItems(lines);
  assert.deepEqual(items.map((i) => [i.id, i.kind, i.who]), [
    [1, 'system', 'System'], [2, 'prompt', 'You'], [4, 'tool', 'Tool'], [5, 'permission', 'Permission'],
    [6, 'permission', 'Permission'], [7, 'reply', 'Claude'], [8, 'result', 'Turn'],
  ]);
  assert.equal(items.find((i) => i.id === 4).tool, 'Write');
  assert.deepEqual(items.filter((i) => i.kind === 'permission').map((i) => i.decision), ['asks', 'allowed']);
  assert.equal(items.find((i) => i.id === 7).text, '<b>done</b>', 'content stays text');
  assert.equal(items.find((i) => i.id === 8).turnCost, '$0.0123');
  assert.equal(items[0].ts, new Date((1763798400 + 1) * 1000).toISOString());
  const all = conversationItems(lines, { showRaw: true });
  assert.deepEqual(all.filter((i) => i.kind === 'raw').map((i) => i.id), [3, 9], 'unknown kinds count as raw');
});

test('buttons follow controls, and none for a person who may not act', () => {
  const running = managed('a', { state: 'running' }, { controls: ['send', 'interrupt', 'stop'] });
  let c = managedControls(running, true);
  assert.deepEqual(c.buttons.map((b) => b.label), ['Interrupt', 'Stop']);
  assert.ok(c.send && c.box && !c.approve);
  const asking = managed('a', { state: 'running' }, { controls: ['approve', 'send', 'interrupt', 'stop'], pending: { id: 'p', tool: 'Write', summary: 'Write: x' } });
  assert.ok(managedControls(asking, true).approve);
  const stopped = managed('a', { state: 'stopped' }, { controls: ['resume', 'delete'] });
  c = managedControls(stopped, true);
  assert.deepEqual(c.buttons.map((b) => b.control), ['resume', 'delete']);
  assert.ok(!c.send && c.box, 'the box gives Resume its text');
  const run = managed('r', { kind: 'run', state: 'running' }, { controls: ['stop'] });
  c = managedControls(run, true);
  assert.deepEqual(c.buttons.map((b) => b.control), ['stop']);
  assert.ok(!c.box);
  for (const s of [running, asking, stopped, run]) {
    assert.deepEqual(managedControls(s, false), { send: false, approve: false, box: false, buttons: [] });
  }
  assert.deepEqual(managedControls(session('plain', { controls: ['approve'] }), true).buttons, [], 'not managed');
});

test('the LIVE banner lists live runs only, by name, with cost and turns', () => {
  const list = [
    managed('s1', { kind: 'server', state: 'running' }),
    managed('r2', { kind: 'run', state: 'waiting', name: 'nightly', total_cost_usd: 0.123, num_turns: 3 }),
    managed('r1', { kind: 'run', state: 'starting', name: 'audit', total_cost_usd: null, num_turns: 1 }, { cost_usd: null }),
    managed('r3', { kind: 'run', state: 'stopped', name: 'old' }),
    managed('r4', { kind: 'run', state: 'error', name: 'broken' }),
    session('plain'),
  ];
  const runs = liveRuns(list);
  assert.deepEqual(runs.map(liveRunText), ['audit: —, 1 turn', 'nightly: $0.12, 3 turns']);
  assert.deepEqual(runs.map((r) => r.id), ['r1', 'r2']);
  assert.ok(isLiveRun(list[1]) && !isLiveRun(list[0]) && !isLiveRun(list[3]) && !isLiveRun(list[5]));
  assert.deepEqual(liveRuns(new Map(list.map((s) => [s.id, s])).values()).length, 2);
  assert.deepEqual(liveRuns([]), []);
});

test('the table marks managed rows with their name, keeps needs-approval first, and searches the name', () => {
  const list = [
    managed('m', { name: 'greeter' }, { last_activity: '2026-11-22T08:05:00Z' }),
    managed('r', { kind: 'run', name: 'nightly' }, { last_activity: '2026-11-22T08:04:00Z' }),
    session('p', { status: 'needs_approval', last_activity: '2026-11-22T07:00:00Z' }),
  ];
  assert.deepEqual(list.map(managedMarker), ['greeter', 'run · nightly', '']);
  assert.deepEqual(visibleSessions(list, DEFAULT_VIEW).map((s) => s.id), ['p', 'm', 'r']);
  assert.ok(matches(list[0], { ...DEFAULT_VIEW, q: 'greet' }));
  assert.ok(!matches(list[2], { ...DEFAULT_VIEW, q: 'greet' }));
});

test("the new session form's body: required prompt and directory, optional fields left out when empty", () => {
  assert.deepEqual(startBody({ prompt: ' ', cwd: '/w' }), { error: 'Write the first prompt.' });
  assert.deepEqual(startBody({ prompt: 'hi', cwd: '  ' }), { error: 'Give the directory the session works in (an absolute path).' });
  assert.deepEqual(startBody({ prompt: 'hi', cwd: '/w', max_cost_usd: 'lots' }), { error: 'The budget must be a number of dollars, 0 or more.' });
  assert.deepEqual(startBody({ prompt: 'hi', cwd: '/w', max_cost_usd: '-1' }).error, 'The budget must be a number of dollars, 0 or more.');
  assert.deepEqual(startBody({ prompt: 'hi\n', cwd: ' /w ', name: '', model: '', max_cost_usd: '', permission_mode: 'default' }), { body: { prompt: 'hi\n', cwd: '/w' } });
  assert.deepEqual(
    startBody({ prompt: 'hi', cwd: '/w', name: ' fixer ', model: 'claude-sonnet-4-5', max_cost_usd: '2.5', permission_mode: 'bypassPermissions' }),
    { body: { prompt: 'hi', cwd: '/w', name: 'fixer', model: 'claude-sonnet-4-5', max_cost_usd: 2.5, permission_mode: 'bypassPermissions' } },
  );
  assert.deepEqual(startBody({ prompt: 'hi', cwd: '/w', max_cost_usd: '0' }).body.max_cost_usd, 0);
});

test('refusals say the API sentence, else the HTTP status', () => {
  assert.equal(refusal('stop the session', 409, { error: 'the session is not running' }), 'Could not stop the session: the session is not running');
  assert.equal(refusal('send the message', 502, null), 'Could not send the message: HTTP 502');
  assert.equal(refusal('start the session', 0, { error: 'the server does not answer' }), 'Could not start the session: the server does not answer');
});

test('log lines merge by id without duplicates; the follow URL resumes after the last id', () => {
  const a = [line(1, 'prompt', 'a'), line(2, 'reply', 'b')];
  assert.deepEqual(mergeLines(a, [line(3, 'result', 'c')]).map((l) => l.id), [1, 2, 3]);
  assert.deepEqual(mergeLines(a, [line(2, 'reply', 'b'), line(3, 'result', 'c')]).map((l) => l.id), [1, 2, 3]);
  assert.deepEqual(mergeLines(a, [line(5, 'x', ''), line(4, 'x', '')]).map((l) => l.id), [1, 2, 4, 5]);
  assert.deepEqual(mergeLines(a, [line(3, 'x', '')], 2).map((l) => l.id), [2, 3], 'the newest kept');
  assert.equal(mergeLines(a, []), a);
  assert.equal(followUrl('a b', 0), 'sessions/a%20b/logs?follow=1&after=0');
  assert.equal(followUrl('x', 42), 'sessions/x/logs?follow=1&after=42');
});

test('recorded actions, newest first, with who and from where', () => {
  const detail = {
    actions: [
      { action: 'start', detail: 'greeter', at: 1763798400, by: { who: 'local', address: '127.0.0.1', origin: null, user_agent: 'x' } },
      { action: 'stop', detail: null, at: 1763798460, by: { who: 'ann', address: '10.0.0.2', origin: 'http://h:8765' } },
    ],
  };
  assert.deepEqual(actionEntries(detail), [
    { action: 'stop', detail: '', who: 'ann', when: '2025-11-22T08:01:00.000Z', where: '10.0.0.2, http://h:8765' },
    { action: 'start', detail: 'greeter', who: 'local', when: '2025-11-22T08:00:00.000Z', where: '127.0.0.1' },
  ]);
  assert.deepEqual(actionEntries({}), []);
});
