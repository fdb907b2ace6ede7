// The page's statuses and sources, spelled once in model.js and used by the
// view (filters, sort, totals). tests/test_frontend_model.py checks the same
// module against the Python side.  Run: node --test tests/js/

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { SOURCES, SOURCE_LABELS, STATUSES, STATUS_LABELS } from '../../src/sessionwatch/frontend/model.js';
import { COLUMNS, parseView, totals, visibleSessions } from '../../src/sessionwatch/frontend/view.js';
import { session } from './fakes.mjs';

test('every status and source has a label, and the lists are frozen', () => {
  assert.deepEqual(STATUSES, Object.keys(STATUS_LABELS));
  assert.deepEqual(SOURCES, Object.keys(SOURCE_LABELS));
  for (const label of [...Object.values(STATUS_LABELS), ...Object.values(SOURCE_LABELS)]) assert.ok(label);
  assert.ok(Object.isFrozen(STATUSES) && Object.isFrozen(STATUS_LABELS) && Object.isFrozen(SOURCES));
});

test('the view accepts exactly the model statuses and sources in the URL', () => {
  for (const status of STATUSES) assert.equal(parseView(`?status=${status}`).status, status);
  for (const source of SOURCES) assert.equal(parseView(`?source=${source}`).source, source);
  assert.equal(parseView('?status=Running').status, '');
});

test('totals count every model status, and sorting by status follows the model order', () => {
  const list = [...STATUSES].reverse().map((status, i) => session(`s${i}`, { status }));
  assert.deepEqual(Object.keys(totals(list, 0).byStatus), [...STATUSES]);
  const column = COLUMNS.find((c) => c.key === 'status');
  assert.ok(column);
  const sorted = visibleSessions(list, { q: '', source: '', status: '', sort: 'status', dir: 'asc' });
  assert.deepEqual(sorted.map((s) => s.status), [...STATUSES]);
});
