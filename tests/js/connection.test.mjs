// The dashboard's connection state machine, driven with a fake EventSource,
// a fake fetch and a fake clock.  Run: node --test tests/js/

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  Connection,
  STATES,
  withLastEventId,
} from '../../src/sessionwatch/frontend/connection.js';
import { FakeClock, flush, makeFakeEventSource, makeFakeFetch, session } from './fakes.mjs';

function setup({ respond = () => ({ status: 503, body: null }), ...options } = {}) {
  const clock = new FakeClock();
  const es = makeFakeEventSource();
  const fetcher = makeFakeFetch((url) => respond(url));
  const states = [];
  const messages = [];
  const snapshots = [];
  let authRequired = 0;
  const conn = new Connection({
    EventSource: es.FakeEventSource,
    fetch: fetcher.fetch,
    clock,
    onState: (s) => states.push(s),
    onMessage: (m) => messages.push(m),
    onSnapshot: (s) => snapshots.push(s),
    onAuthRequired: () => {
      authRequired += 1;
    },
    ...options,
  });
  return {
    clock,
    es,
    fetcher,
    states,
    messages,
    snapshots,
    conn,
    authRequired: () => authRequired,
  };
}

/** Fail the current EventSource and every reconnect attempt until polling starts. */
async function exhaustAttempts(t) {
  t.es.latest().fail();
  for (const delay of [1000, 2000, 4000, 8000, 16000]) {
    await t.clock.advance(delay);
    t.es.latest().fail();
  }
  await flush();
}

test('withLastEventId adds the id to the query string', () => {
  assert.equal(withLastEventId('stream', null), 'stream');
  assert.equal(withLastEventId('stream', 41), 'stream?last_event_id=41');
  assert.equal(withLastEventId('stream?token=a', '7'), 'stream?token=a&last_event_id=7');
});

test('opening the EventSource makes the connection Live', () => {
  const t = setup();
  t.conn.start();
  assert.equal(t.conn.state, STATES.CONNECTING);
  assert.equal(t.es.instances.length, 1);
  assert.equal(t.es.latest().url, 'stream');
  t.es.latest().open();
  assert.equal(t.conn.state, STATES.LIVE);
  assert.deepEqual(
    t.states.map((s) => s.state),
    [STATES.CONNECTING, STATES.LIVE],
  );
});

test('events reach onMessage with their type, sessions and id; keepalives do not', () => {
  const t = setup();
  t.conn.start();
  const source = t.es.latest();
  source.open();
  source.emit('init', { type: 'init', sessions: [session('a')], timestamp: 1 }, 1);
  source.emit('keepalive', { type: 'keepalive', sessions: [], timestamp: 2 });
  source.emit('session-updated', { type: 'session-updated', sessions: [session('a')], timestamp: 3 }, 2);
  source.emit('session-deleted', { type: 'session-deleted', sessions: [{ id: 'a' }], timestamp: 4 }, 3);
  assert.deepEqual(
    t.messages.map((m) => [m.type, m.id, m.sessions.length]),
    [
      ['init', '1', 1],
      ['session-updated', '2', 1],
      ['session-deleted', '3', 1],
    ],
  );
  assert.equal(t.conn.lastEventId, '3');
});

test('a garbled event is skipped and the stream goes on', () => {
  const t = setup();
  t.conn.start();
  const source = t.es.latest();
  source.open();
  for (const fn of source.listeners.get('session-updated')) fn({ data: '{not json', lastEventId: '5' });
  source.emit('session-updated', { sessions: [session('b')] }, 6);
  assert.deepEqual(t.messages.map((m) => m.id), ['6']);
  assert.equal(t.conn.state, STATES.LIVE);
});

test('reconnects with backoff 1, 2, 4, 8, 16 s and gives up SSE after 5 attempts', async () => {
  const t = setup();
  t.conn.start();
  t.es.latest().open();
  t.es.latest().fail();
  assert.equal(t.conn.state, STATES.RECONNECTING);

  const delays = [1000, 2000, 4000, 8000, 16000];
  for (const [i, delay] of delays.entries()) {
    const before = t.es.instances.length;
    assert.equal(t.conn.attempt, i + 1);
    assert.equal(t.states.at(-1).retryInMs, delay);
    // Not a moment early...
    await t.clock.advance(delay - 1);
    assert.equal(t.es.instances.length, before, `attempt ${i + 1} came early`);
    // ...and exactly on time.
    await t.clock.advance(1);
    assert.equal(t.es.instances.length, before + 1, `attempt ${i + 1} did not come`);
    assert.ok(t.es.instances[before - 1].closed, 'the failed EventSource is closed');
    t.es.latest().fail();
  }
  // Five attempts made, all failed: no sixth one on the backoff schedule...
  assert.equal(t.es.instances.length, 1 + delays.length);
  // ...polling instead.
  await flush();
  assert.deepEqual(t.fetcher.calls.map((c) => c.url), ['all']);
  assert.equal(t.conn.state, STATES.OFFLINE); // /all answered 503
});

test('no polling while reconnect attempts remain', async () => {
  const t = setup();
  t.conn.start();
  t.es.latest().fail();
  for (const delay of [1000, 2000, 4000, 8000]) {
    await t.clock.advance(delay);
    t.es.latest().fail();
  }
  assert.equal(t.fetcher.calls.length, 0);
  assert.equal(t.conn.state, STATES.RECONNECTING);
});

test('falls back to polling /all every few seconds; a good answer shows Polling and replaces the table', async () => {
  let body = { sessions: [session('a'), session('b')], last_event_id: 10, timestamp: 1 };
  const t = setup({ respond: () => ({ status: 200, body }), pollMs: 3000, sseRetryMs: 15000 });
  t.conn.start();
  t.es.latest().open();
  await exhaustAttempts(t);

  assert.equal(t.conn.state, STATES.POLLING);
  assert.equal(t.snapshots.length, 1);
  assert.deepEqual(t.snapshots[0].sessions.map((s) => s.id), ['a', 'b']);
  assert.equal(t.conn.lastEventId, '10');

  body = { sessions: [session('b')], last_event_id: 12, timestamp: 2 };
  await t.clock.advance(2999);
  assert.equal(t.fetcher.calls.length, 1);
  await t.clock.advance(1);
  assert.equal(t.fetcher.calls.length, 2);
  assert.deepEqual(t.snapshots.at(-1).sessions.map((s) => s.id), ['b']);
  assert.equal(t.conn.lastEventId, '12');
});

test('polling with no answer shows Offline, and Polling again when /all answers', async () => {
  let up = false;
  const t = setup({
    respond: () => {
      if (!up) throw new TypeError('Failed to fetch');
      return { status: 200, body: { sessions: [], last_event_id: 3, timestamp: 1 } };
    },
    pollMs: 3000,
    sseRetryMs: 60000,
  });
  t.conn.start();
  await exhaustAttempts(t);
  assert.equal(t.conn.state, STATES.OFFLINE);
  await t.clock.advance(3000);
  assert.equal(t.conn.state, STATES.OFFLINE);

  up = true;
  const before = t.es.instances.length;
  await t.clock.advance(3000);
  assert.equal(t.conn.state, STATES.POLLING);
  // The server answers again, so SSE is tried at once instead of in 60 s.
  assert.equal(t.es.instances.length, before + 1);
  assert.equal(t.es.latest().url, 'stream?last_event_id=3');
});

test('SSE is retried in the background while polling, and its opening returns to Live', async () => {
  const t = setup({
    respond: () => ({ status: 200, body: { sessions: [session('a')], last_event_id: 20, timestamp: 1 } }),
    pollMs: 3000,
    sseRetryMs: 15000,
  });
  t.conn.start();
  t.es.latest().open();
  t.es.latest().emit('init', { sessions: [session('a')] }, 5);
  await exhaustAttempts(t);
  assert.equal(t.conn.state, STATES.POLLING);

  // Background retries fail: polling goes on, state stays Polling.
  let count = t.es.instances.length;
  await t.clock.advance(15000);
  assert.equal(t.es.instances.length, count + 1);
  t.es.latest().fail();
  assert.equal(t.conn.state, STATES.POLLING);
  const polls = t.fetcher.calls.length;
  await t.clock.advance(3000);
  assert.ok(t.fetcher.calls.length > polls, 'polling goes on after a failed background retry');

  // The next background retry opens: Live, and polling stops.
  count = t.es.instances.length;
  await t.clock.advance(15000);
  assert.equal(t.es.instances.length, count + 1);
  assert.equal(t.es.latest().url, 'stream?last_event_id=20');
  t.es.latest().open();
  assert.equal(t.conn.state, STATES.LIVE);
  const pollsWhenLive = t.fetcher.calls.length;
  await t.clock.advance(60000);
  assert.equal(t.fetcher.calls.length, pollsWhenLive, 'no polling while Live');
});

test('recovers to Live when a reconnect attempt opens, and the backoff starts over', async () => {
  const t = setup();
  t.conn.start();
  t.es.latest().open();
  t.es.latest().fail();
  await t.clock.advance(1000);
  t.es.latest().fail();
  await t.clock.advance(2000);
  t.es.latest().open();
  assert.equal(t.conn.state, STATES.LIVE);
  assert.equal(t.conn.attempt, 0);

  t.es.latest().fail();
  assert.equal(t.states.at(-1).retryInMs, 1000, 'backoff starts again at 1 s');
  const before = t.es.instances.length;
  await t.clock.advance(1000);
  assert.equal(t.es.instances.length, before + 1);
});

test('resumes with the last event id on every re-created EventSource', async () => {
  const t = setup();
  t.conn.start();
  assert.equal(t.es.latest().url, 'stream', 'first connection has no id to resume from');
  t.es.latest().open();
  t.es.latest().emit('init', { sessions: [session('a')] }, 40);
  t.es.latest().emit('session-updated', { sessions: [session('a')] }, 41);
  t.es.latest().fail();
  await t.clock.advance(1000);
  assert.equal(t.es.latest().url, 'stream?last_event_id=41');
  t.es.latest().fail();
  await t.clock.advance(2000);
  assert.equal(t.es.latest().url, 'stream?last_event_id=41');
  t.es.latest().open();
  t.es.latest().emit('session-created', { sessions: [session('c')] }, 42);
  t.es.latest().fail();
  await t.clock.advance(1000);
  assert.equal(t.es.latest().url, 'stream?last_event_id=42');
});

test('the id follows the server even when it goes down (a restarted server counts from 1)', () => {
  const t = setup();
  t.conn.start();
  t.es.latest().open();
  t.es.latest().emit('session-updated', { sessions: [] }, 900);
  t.es.latest().emit('init', { sessions: [] }, 1);
  assert.equal(t.conn.lastEventId, '1');
});

test('after falling back, the next successful /all replaces the table and is resumed from', async () => {
  const t = setup({
    respond: () => ({
      status: 200,
      body: { sessions: [session('x'), session('y')], last_event_id: 77, timestamp: 9 },
    }),
  });
  t.conn.start();
  t.es.latest().open();
  t.es.latest().emit('init', { sessions: [session('a')] }, 50);
  await exhaustAttempts(t);
  assert.equal(t.snapshots.length, 1);
  assert.deepEqual(t.snapshots[0], {
    sessions: [session('x'), session('y')],
    lastEventId: '77',
    timestamp: 9,
  });
  assert.equal(t.conn.lastEventId, '77');
});

test('a poll answered after SSE came back is ignored', async () => {
  let release;
  let slow = false;
  const clock = new FakeClock();
  const es = makeFakeEventSource();
  const snapshots = [];
  const conn = new Connection({
    EventSource: es.FakeEventSource,
    clock,
    fetch: async () => {
      if (slow) await new Promise((resolve) => (release = resolve));
      return { status: 200, ok: true, json: async () => ({ sessions: [session('old')], last_event_id: 1 }) };
    },
    onSnapshot: (s) => snapshots.push(s),
    pollMs: 3000,
    sseRetryMs: 4000,
  });
  conn.start();
  es.latest().fail();
  for (const delay of [1000, 2000, 4000, 8000, 16000]) {
    await clock.advance(delay);
    es.latest().fail();
  }
  await flush();
  assert.equal(snapshots.length, 1);
  slow = true;
  await clock.advance(3000); // a poll starts and hangs
  await clock.advance(1000); // the background retry
  es.latest().open();
  es.latest().emit('session-updated', { sessions: [session('new')] }, 60);
  release();
  await flush();
  assert.equal(snapshots.length, 1, 'the late /all must not replace fresher stream data');
  assert.equal(conn.lastEventId, '60');
  assert.equal(conn.state, STATES.LIVE);
});

test('401 on /all stops the machine and asks for sign-in', async () => {
  const t = setup({ respond: () => ({ status: 401, body: { error: 'token required' } }) });
  t.conn.start();
  await exhaustAttempts(t);
  assert.equal(t.authRequired(), 1);
  const count = t.es.instances.length;
  await t.clock.advance(120000);
  assert.equal(t.es.instances.length, count, 'no more attempts after a 401');
  assert.equal(t.fetcher.calls.length, 1);
});

test('an EventSource that never opens counts as a failed attempt', async () => {
  const t = setup({ connectTimeoutMs: 5000 });
  t.conn.start();
  await t.clock.advance(5000);
  assert.equal(t.conn.state, STATES.RECONNECTING);
  assert.ok(t.es.instances[0].closed);
});

test('silence longer than silenceMs drops the connection; keepalives count as life', async () => {
  const t = setup({ silenceMs: 10000 });
  t.conn.start();
  t.es.latest().open();
  for (let i = 0; i < 5; i++) {
    await t.clock.advance(9000);
    t.es.latest().emit('keepalive', { sessions: [] });
  }
  assert.equal(t.conn.state, STATES.LIVE);
  await t.clock.advance(10000);
  assert.equal(t.conn.state, STATES.RECONNECTING);
});

test('stop() closes the EventSource and cancels every timer', async () => {
  const t = setup();
  t.conn.start();
  t.es.latest().open();
  t.es.latest().fail();
  t.conn.stop();
  assert.deepEqual(t.clock.pending(), []);
  await t.clock.advance(100000);
  assert.equal(t.es.instances.length, 1);
});

test('retryNow() skips the wait for the next attempt', async () => {
  const t = setup();
  t.conn.start();
  t.es.latest().fail();
  await t.clock.advance(1000);
  t.es.latest().fail(); // next attempt in 2 s
  const before = t.es.instances.length;
  t.conn.retryNow();
  assert.equal(t.es.instances.length, before + 1);
  t.es.latest().open();
  assert.equal(t.conn.state, STATES.LIVE);
  t.conn.retryNow(); // no-op while Live
  assert.equal(t.es.instances.length, before + 1);
});

// --- the fallback specification shared with the Panel dashboard -------------
// tests/vectors/feed.json is run here against Connection and by
// tests/test_feed.py against sessionwatch.clients.feed.FeedMachine.

import { readFileSync } from 'node:fs';

const VECTORS = JSON.parse(
  readFileSync(new URL('../vectors/feed.json', import.meta.url), 'utf8'),
);

const ANSWERS = {
  ok: { status: 200, body: { sessions: [], last_event_id: 1, timestamp: 0 } },
  error: { status: 503, body: null },
  auth: { status: 401, body: null },
};

for (const c of VECTORS.cases) {
  test(`shared vector: ${c.name}`, async () => {
    const o = VECTORS.options;
    let answer = c.all ?? 'error';
    const t = setup({
      respond: () => ANSWERS[answer],
      backoffMs: o.backoff_ms,
      pollMs: o.poll_ms,
      sseRetryMs: o.sse_retry_ms,
      connectTimeoutMs: o.connect_timeout_ms,
    });
    for (const [number, step] of c.steps.entries()) {
      switch (step.do) {
        case 'start': t.conn.start(); break;
        case 'open': t.es.latest().open(); break;
        case 'fail': t.es.latest().fail(); break;
        case 'wait': await t.clock.advance(step.ms); break;
        case 'all': answer = step.with; break;
        case 'retry_now': t.conn.retryNow(); break;
        default: throw new Error(`unknown step ${step.do}`);
      }
      await flush();
      const observed = {
        // The page shows Offline and asks for sign-in; the spec calls it unauthorized.
        state: t.authRequired() > 0 ? 'unauthorized' : t.conn.state,
        attempt: t.conn.attempt,
        streams: t.es.instances.length,
        polls: t.fetcher.calls.length,
      };
      const expected = step.expect ?? {};
      const seen = Object.fromEntries(Object.keys(expected).map((k) => [k, observed[k]]));
      assert.deepEqual(seen, expected, `step ${number} ${JSON.stringify(step)}`);
    }
    t.conn.stop();
  });
}
