// Which status changes deserve a browser notification, and what it says.
// Pure, no DOM: main.js shows it and opens the session's detail on a click.

import { NEEDS_APPROVAL, pendingLine } from './approvals.js';
import { shortProject } from './format.js';
import { viewQuery } from './view.js';

/** The page's URL query that opens `id`'s detail, keeping the rest of `view` (search, filters, sort). */
export function detailQuery(id, view = {}) {
  return viewQuery({ q: '', source: '', status: '', sort: '', dir: '', ...view, session: id });
}

/**
 * The notification for a session going from `before` to `after`, or null.
 *
 * - a Claude session that now needs approval (or asks about another tool
 *   call): its title, project and the tool with what it wants to do;
 * - a Claude session that was running and now waits: it needs the user;
 * - a Claude session that failed: why;
 * - a Panel session that just went stale: its tracker stopped heartbeating.
 *
 * `looking` is the id of the session the person is looking at (its detail is
 * open in a visible page): that one stays quiet. `view` is the page's view,
 * kept in the notification's `url` (the query that opens the session's detail).
 */
export function notificationFor(before, after, { looking = null, view = {} } = {}) {
  if (!before || !after) return null;
  if (looking && looking === after.id) return null;
  const project = shortProject(after.project);
  const name = after.title ?? after.current_task ?? null;
  const url = detailQuery(after.id, view);
  const tag = `sessionwatch-${after.id}`;
  if (after.source === 'claude' && after.status === NEEDS_APPROVAL) {
    const samePrompt = before.status === NEEDS_APPROVAL && (before.pending?.id ?? null) === (after.pending?.id ?? null);
    if (samePrompt) return null;
    const p = after.pending;
    const tool = p?.tool ?? (p?.kind === 'question' ? 'A question' : 'A tool call');
    const what = p ? pendingLine(p) : (after.status_reason ?? '');
    return {
      title: `${tool} needs approval in ${project}`,
      body: [name, what].filter(Boolean).join('\n') || 'The session waits for your answer.',
      tag,
      url,
    };
  }
  if (before.status === after.status) return null;
  if (after.source === 'claude' && before.status === 'running' && after.status === 'waiting') {
    return {
      title: `Claude is waiting in ${project}`,
      body: name ?? 'The session needs your input.',
      tag,
      url,
    };
  }
  if (after.source === 'claude' && after.status === 'failed') {
    return {
      title: `Claude failed in ${project}`,
      body: [name, after.status_reason].filter(Boolean).join('\n') || 'The session stopped with an error.',
      tag,
      url,
    };
  }
  if (after.source === 'panel' && after.status === 'stale') {
    return {
      title: `Panel session stale: ${project}`,
      body: after.user ? `${after.user}'s session stopped sending heartbeats.` : 'The session stopped sending heartbeats.',
      tag,
      url,
    };
  }
  return null;
}
