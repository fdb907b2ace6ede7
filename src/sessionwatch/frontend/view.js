// What the table shows: columns, search, filters, sort, totals, and the URL
// query that keeps them. Pure functions, no DOM.

import {
  compactNumber,
  cost,
  duration,
  isSameDay,
  parseTime,
  relativeTime,
  shortModel,
  shortProject,
  totalTokens,
} from './format.js';
import { NEEDS_APPROVAL, pendingLine } from './approvals.js';
import { managedMarker } from './managed.js';
import { SOURCES, STATUSES } from './model.js';

const STATUS_RANK = Object.fromEntries(STATUSES.map((s, i) => [s, i]));

/**
 * The table's columns. `sort` gives the value compared when sorting, `text`
 * what the cell shows; `ticks` marks cells that change with the clock alone.
 */
/**
 * Why a session has its status, in a few words: what a pending prompt asks
 * (its one-line summary, which names the tool) or the server's
 * `status_reason`; '' when neither is known.
 */
export function statusNote(s) {
  if (s.pending) return pendingLine(s.pending);
  return s.status_reason ?? '';
}

export const COLUMNS = Object.freeze([
  {
    key: 'status',
    label: 'Status',
    sort: (s) => STATUS_RANK[s.status] ?? STATUSES.length,
    // The short word; the long label is the cell's hover text and the legend.
    text: (s) => String(s.status ?? '—'),
    // Why, shown small beside it (the pending prompt's tool and summary, or status_reason).
    note: statusNote,
  },
  { key: 'source', label: 'Source', sort: (s) => s.source ?? '', text: (s) => s.source ?? '—' },
  // The machine (an agent's --host-name; a tracker's host); filtered by the Host menu.
  { key: 'host', label: 'Host', sort: (s) => s.host ?? '', text: (s) => s.host ?? '—', optional: true },
  {
    key: 'project',
    label: 'Project',
    sort: (s) => shortProject(s.project).toLowerCase(),
    text: (s) => shortProject(s.project),
  },
  {
    key: 'title',
    label: 'Title',
    sort: (s) => (s.title ?? s.current_task ?? '').toLowerCase(),
    text: (s) => s.title ?? s.current_task ?? '—',
    // A managed session's name (a run's too), shown as a marker before the title.
    marker: managedMarker,
  },
  { key: 'git_branch', label: 'Branch', sort: (s) => s.git_branch ?? '', text: (s) => s.git_branch ?? '—', optional: true },
  { key: 'model', label: 'Model', sort: (s) => s.model ?? '', text: (s) => shortModel(s.model), optional: true },
  {
    key: 'message_count',
    label: 'Messages',
    numeric: true,
    sort: (s) => s.message_count ?? 0,
    text: (s) => compactNumber(s.message_count ?? 0),
  },
  {
    key: 'tool_calls',
    label: 'Tools',
    numeric: true,
    optional: true,
    sort: (s) => s.tool_calls ?? 0,
    text: (s) => compactNumber(s.tool_calls ?? 0),
  },
  {
    key: 'tokens',
    label: 'Tokens',
    numeric: true,
    sort: (s) => totalTokens(s.tokens),
    text: (s) => compactNumber(totalTokens(s.tokens)),
  },
  {
    key: 'cost_usd',
    label: 'Cost',
    numeric: true,
    sort: (s) => (typeof s.cost_usd === 'number' ? s.cost_usd : -1),
    text: (s) => cost(s.cost_usd),
  },
  {
    key: 'last_activity',
    label: 'Last activity',
    ticks: true,
    sort: (s) => parseTime(s.last_activity) || 0,
    text: (s, now) => relativeTime(s.last_activity, now),
  },
  {
    key: 'duration_seconds',
    label: 'Duration',
    numeric: true,
    optional: true,
    sort: (s) => s.duration_seconds ?? 0,
    text: (s) => duration(s.duration_seconds),
  },
]);

export const COLUMN_KEYS = Object.freeze(COLUMNS.map((c) => c.key));

export const DEFAULT_VIEW = Object.freeze({
  q: '',
  source: '',
  status: '',
  host: '',
  sort: 'last_activity',
  dir: 'desc',
  session: '',
});

/** The view kept in the page's query string: `?q=api&source=claude&sort=cost_usd&dir=desc`. */
export function parseView(search) {
  const params = new URLSearchParams(search);
  const view = { ...DEFAULT_VIEW };
  view.q = (params.get('q') ?? '').slice(0, 200);
  const source = params.get('source') ?? '';
  view.source = SOURCES.includes(source) ? source : '';
  const status = params.get('status') ?? '';
  view.status = STATUSES.includes(status) ? status : '';
  view.host = (params.get('host') ?? '').slice(0, 200);
  const sort = params.get('sort') ?? '';
  view.sort = COLUMN_KEYS.includes(sort) ? sort : DEFAULT_VIEW.sort;
  const dir = params.get('dir') ?? '';
  view.dir = dir === 'asc' || dir === 'desc' ? dir : DEFAULT_VIEW.dir;
  view.session = params.get('session') ?? '';
  return view;
}

/** The query string for a view, leaving out defaults ("" when all are defaults). */
export function viewQuery(view) {
  const params = new URLSearchParams();
  for (const key of ['q', 'source', 'status', 'host', 'sort', 'dir', 'session']) {
    if (view[key] && view[key] !== DEFAULT_VIEW[key]) params.set(key, view[key]);
  }
  const s = params.toString();
  return s ? `?${s}` : '';
}

/** Whether a session passes the search box and the filters. */
export function matches(session, view) {
  if (view.source && session.source !== view.source) return false;
  if (view.status && session.status !== view.status) return false;
  if (view.host && session.host !== view.host) return false;
  const q = view.q.trim().toLowerCase();
  if (!q) return true;
  const haystack = [session.project, session.title, session.git_branch, session.current_task, managedMarker(session)]
    .filter((v) => typeof v === 'string')
    .join('\n')
    .toLowerCase();
  return q.split(/\s+/).every((word) => haystack.includes(word));
}

/**
 * Sessions that pass the view, in its order (ties broken by id, so the order
 * is stable). Sessions that need approval come first whatever the sort (a
 * person is needed there), except when sorting by status, which has its own
 * order (model.js).
 */
export function visibleSessions(sessions, view) {
  const column = COLUMNS.find((c) => c.key === view.sort) ?? COLUMNS.find((c) => c.key === DEFAULT_VIEW.sort);
  const sign = view.dir === 'asc' ? 1 : -1;
  const pin = column.key !== 'status';
  return [...sessions]
    .filter((s) => matches(s, view))
    .map((s) => [column.sort(s), s])
    .sort(([a, sa], [b, sb]) => {
      const na = pin && sa.status === NEEDS_APPROVAL;
      const nb = pin && sb.status === NEEDS_APPROVAL;
      if (na !== nb) return na ? -1 : 1;
      if (a < b) return -sign;
      if (a > b) return sign;
      return sa.id < sb.id ? -1 : sa.id > sb.id ? 1 : 0;
    })
    .map(([, s]) => s);
}

/**
 * Sessions by status, and tokens and cost for those active today and for all
 * of them.
 */
export function totals(sessions, nowMs) {
  const byStatus = Object.fromEntries(STATUSES.map((s) => [s, 0]));
  const today = { sessions: 0, tokens: 0, cost: 0 };
  const all = { sessions: 0, tokens: 0, cost: 0 };
  for (const s of sessions) {
    if (s.status in byStatus) byStatus[s.status] += 1;
    const tokens = totalTokens(s.tokens);
    const usd = typeof s.cost_usd === 'number' && Number.isFinite(s.cost_usd) ? s.cost_usd : 0;
    all.sessions += 1;
    all.tokens += tokens;
    all.cost += usd;
    if (isSameDay(s.last_activity, nowMs)) {
      today.sessions += 1;
      today.tokens += tokens;
      today.cost += usd;
    }
  }
  return { byStatus, today, all };
}
