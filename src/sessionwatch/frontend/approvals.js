// Approvals and away mode, the pure parts: what a pending prompt says, whether
// the page may answer it, the body POST /sessions/{id}/approve takes, what an
// error answer means, the recorded decisions of the detail panel, and the
// away switch's words. No DOM; approve.js draws and sends.

/** The status that sorts before every other: a person is needed. */
export const NEEDS_APPROVAL = 'needs_approval';

/** The tool and the one-line summary of a pending prompt: "Write: note.txt" (the summary names the tool already). */
export function pendingLine(p) {
  if (!p) return '';
  const tool = typeof p.tool === 'string' ? p.tool : '';
  const summary = typeof p.summary === 'string' ? p.summary : '';
  if (!summary) return tool || (p.kind === 'question' ? 'a question' : 'permission');
  if (!tool || summary === tool || summary.startsWith(`${tool}:`) || summary.startsWith(`${tool} `)) return summary;
  return `${tool}: ${summary}`;
}

/** Whether the page may answer the session's prompt now: it is pending and the server says "approve". */
export function canApprove(session) {
  return Boolean(
    session &&
      session.pending &&
      typeof session.pending.id === 'string' &&
      Array.isArray(session.controls) &&
      session.controls.includes('approve'),
  );
}

/**
 * The JSON body of POST /sessions/{id}/approve. A deny's message is trimmed
 * and left out when empty (the server then tells Claude Code "denied from the
 * dashboard"); an allow carries none.
 */
export function approveBody(pendingId, decision, message = null) {
  if (decision !== 'allow' && decision !== 'deny') throw new Error(`decision must be allow or deny, not ${decision}`);
  const body = { pending_id: pendingId, decision };
  const text = typeof message === 'string' ? message.trim() : '';
  if (decision === 'deny' && text) body.message = text;
  return body;
}

/** The sentence to show for a failed answer: the API's own `error`, else the HTTP status. */
export function approveError(status, body) {
  const error = body && typeof body.error === 'string' && body.error ? body.error : `HTTP ${status}`;
  return `Could not answer the prompt: ${error}`;
}

function place(by) {
  if (!by) return '';
  const parts = [by.address, by.origin].filter((v) => typeof v === 'string' && v);
  return parts.join(', ');
}

/**
 * One recorded decision as the detail panel lists it:
 * {decision: "allowed"|"denied", tool, summary, message, who, when (ISO), where}.
 */
export function approvalEntry(a) {
  const by = a && typeof a.by === 'object' ? a.by : null;
  const when = typeof a?.decided_at === 'number' ? new Date(a.decided_at * 1000).toISOString() : String(a?.decided_at ?? '');
  return {
    decision: a?.decision === 'allow' ? 'allowed' : a?.decision === 'deny' ? 'denied' : String(a?.decision ?? ''),
    tool: a?.tool ?? '',
    summary: pendingLine({ tool: a?.tool, summary: a?.summary }),
    message: a?.message ?? '',
    who: by?.who ?? 'unknown',
    when,
    where: place(by),
  };
}

/** The recorded decisions of GET /sessions/{id} ("approvals"), newest first. */
export function approvalEntries(detail) {
  const list = Array.isArray(detail?.approvals) ? detail.approvals : [];
  return list.map(approvalEntry).reverse();
}

/** The away switch's label and hover text from GET/PUT /away. */
export function awayText(away) {
  if (!away) return { on: false, label: 'Away', title: 'Away mode: unknown (the server does not say)' };
  const waiting = Array.isArray(away.waiting) ? away.waiting.length : 0;
  const wait = typeof away.approval_wait_s === 'number' ? ` up to ${Math.round(away.approval_wait_s)} s` : '';
  const who = away.by && away.by.who ? `; set by ${away.by.who}` : '';
  const when = typeof away.changed_at === 'number' ? ` at ${new Date(away.changed_at * 1000).toISOString()}` : '';
  if (away.on) {
    return {
      on: true,
      label: waiting ? `Away (${waiting} waiting)` : 'Away',
      title: `Away mode is on: permission prompts wait${wait} for an answer here${who}${when}`,
    };
  }
  return {
    on: false,
    label: 'Away',
    title: `Away mode is off: prompts are shown here, Claude Code asks in its terminal${who}${when}`,
  };
}
