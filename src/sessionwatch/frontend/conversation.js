// The conversation view of a managed session or a run: its log lines as
// prompts, replies, tool calls, permission asks and answers and turn ends
// (with the cost of each turn), followed as they come through
// GET /sessions/{id}/logs?follow=1 (an EventSource, opened again after an
// error with the last id it saw as ?after=), raw protocol lines only with
// "show raw". Log content is model output: it only ever reaches the page as
// text. The pure parts are managed.js's.

import { h } from './dom.js';
import { conversationItems, followUrl, mergeLines } from './managed.js';

/** Delays before following again after the stream failed, then the last one over and over. */
const RETRY_MS = [500, 1000, 2000, 4000, 8000];

/** One session's conversation: its element (`el`), its log lines, and the stream that brings them. */
export class Conversation {
  constructor(id) {
    this.id = id;
    this.lines = [];
    this.lastId = 0;
    this.showRaw = false;
    this.shown = 0; // the id of the last line drawn
    this.es = null;
    this.timer = null;
    this.attempt = 0;
    this.stopped = false;
    this.drawTimer = null;
    this.list = h('ol', { class: 'conversation', 'aria-live': 'polite', dataset: { session: id } });
    this.empty = h('p', { class: 'muted conversation-empty' }, 'Nothing logged yet.');
    this.state = h('small', { class: 'conversation-state muted' }, 'connecting…');
    const raw = h('input', {
      type: 'checkbox',
      class: 'show-raw',
      onchange: () => {
        this.showRaw = raw.checked;
        this.redraw();
      },
    });
    this.el = h(
      'section',
      { class: 'conversation-view', 'aria-label': 'Conversation' },
      h('h3', {}, 'Conversation ', this.state, h('label', { class: 'raw-toggle', title: 'Show the protocol lines too' }, raw, ' show raw')),
      this.empty,
      this.list,
    );
  }

  /** Follow the session's logs from the start. */
  start() {
    this.stopped = false;
    this.open();
  }

  /** Close the stream (the detail closed or shows another session). */
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.drawTimer);
    this.timer = null;
    this.es?.close();
    this.es = null;
  }

  open() {
    if (this.stopped || this.es) return;
    const es = new EventSource(followUrl(this.id, this.lastId));
    this.es = es;
    es.addEventListener('open', () => {
      this.attempt = 0;
      this.setState('live');
    });
    es.addEventListener('log', (event) => {
      let line;
      try {
        line = JSON.parse(event.data);
      } catch {
        return;
      }
      if (!line || typeof line.id !== 'number' || line.id <= this.lastId) return;
      this.lastId = line.id;
      this.lines = mergeLines(this.lines, [line]);
      this.drawSoon();
    });
    es.addEventListener('error', () => {
      // The browser would reconnect to the same URL (from the first line again): open it anew after the last id.
      es.close();
      if (this.es !== es) return;
      this.es = null;
      if (this.stopped) return;
      this.setState('reconnecting…');
      const delay = RETRY_MS[Math.min(this.attempt, RETRY_MS.length - 1)];
      this.attempt += 1;
      this.timer = setTimeout(() => {
        this.timer = null;
        this.open();
      }, delay);
    });
  }

  setState(text) {
    this.state.textContent = text;
    this.el.dataset.state = text;
  }

  drawSoon() {
    if (this.drawTimer !== null) return;
    this.drawTimer = setTimeout(() => {
      this.drawTimer = null;
      this.draw();
    }, 30);
  }

  /** Append the items not drawn yet (older items never change: a turn's cost only looks back). */
  draw() {
    const atBottom = this.nearBottom();
    const items = conversationItems(this.lines, { showRaw: this.showRaw });
    const fresh = items.filter((item) => item.id > this.shown);
    if (this.lines.length) this.shown = this.lines[this.lines.length - 1].id;
    for (const item of fresh) this.list.append(itemElement(item));
    // a line cut from the front (the most kept): drop what is no longer held
    while (this.list.children.length > items.length) this.list.firstElementChild.remove();
    this.empty.hidden = this.list.children.length > 0;
    if (atBottom && fresh.length) this.scrollToEnd();
  }

  redraw() {
    this.list.replaceChildren();
    this.shown = 0;
    this.draw();
  }

  // The list scrolls on its own (the panel's fields follow it): it stays at the end while the reader is there.
  nearBottom() {
    const box = this.list;
    return box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  }

  scrollToEnd() {
    this.list.scrollTop = this.list.scrollHeight;
  }
}

function itemElement(item) {
  return h(
    'li',
    {
      class: `msg msg-${item.kind}${item.level === 'error' ? ' msg-error' : item.level === 'warn' ? ' msg-warn' : ''}`,
      dataset: { kind: item.kind, id: String(item.id), ...(item.decision ? { decision: item.decision } : {}) },
    },
    h('span', { class: 'who' }, item.kind === 'tool' && item.tool ? item.tool : item.who),
    h('span', { class: 'text' }, item.text),
    item.turnCost ? h('span', { class: 'turn-cost', title: 'The cost of this turn' }, `this turn ${item.turnCost}`) : null,
    item.ts ? h('time', { datetime: item.ts, title: item.ts }, item.ts.slice(11, 19)) : null,
  );
}
