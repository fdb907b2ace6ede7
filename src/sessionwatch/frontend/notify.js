// Which status changes deserve a browser notification. Pure, no DOM.

import { shortProject } from './format.js';

/**
 * The notification for a session going from `before` to `after`, or null.
 *
 * - a Claude session that was running and now waits: it needs the user;
 * - a Panel session that just went stale: its tracker stopped heartbeating.
 */
export function notificationFor(before, after) {
  if (!before || !after || before.status === after.status) return null;
  const project = shortProject(after.project);
  if (after.source === 'claude' && before.status === 'running' && after.status === 'waiting') {
    return {
      title: `Claude is waiting in ${project}`,
      body: after.title ?? 'The session needs your input.',
      tag: `sessionwatch-${after.id}`,
    };
  }
  if (after.source === 'panel' && after.status === 'stale') {
    return {
      title: `Panel session stale: ${project}`,
      body: after.user ? `${after.user}'s session stopped sending heartbeats.` : 'The session stopped sending heartbeats.',
      tag: `sessionwatch-${after.id}`,
    };
  }
  return null;
}
