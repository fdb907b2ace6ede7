// The session vocabulary of the page, spelled once: the statuses in their sort
// order with the words the page shows for them, and the sources. Pure, no DOM.
//
// tests/test_frontend_model.py reads this module (through node) and checks it
// against the Python side's statuses and sources.

/** Status → label, in the order the table sorts and the totals list them. */
export const STATUS_LABELS = Object.freeze({
  running: 'running',
  needs_approval: 'needs approval',
  waiting: 'waiting for input',
  idle: 'idle',
  stale: 'stale',
  ended: 'ended',
  failed: 'failed',
});

export const STATUSES = Object.freeze(Object.keys(STATUS_LABELS));

/** Source → label. */
export const SOURCE_LABELS = Object.freeze({
  claude: 'Claude',
  panel: 'Panel',
});

export const SOURCES = Object.freeze(Object.keys(SOURCE_LABELS));
