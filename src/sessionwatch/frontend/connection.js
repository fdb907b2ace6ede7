// The dashboard's connection to the server, as a state machine with no DOM.
//
//   connecting ──open──► live ──error──► reconnecting (1, 2, 4, 8, 16 s)
//        │                 ▲                  │ 5 failed attempts
//        └──error──────────┼──────────────────┤
//                          │                  ▼
//                          └──open── polling ⇄ offline   (GET /all every pollMs,
//                                                         SSE retried in the background)
//
// Why the page re-creates the EventSource itself: a browser fails an
// EventSource for good on any non-200 answer (a 502 from nginx while the
// server restarts), so its own reconnect cannot be relied on. A re-created
// EventSource cannot set the Last-Event-ID header, so the last id travels as
// `?last_event_id=N`, which the server treats the same way (DESIGN.md, "The
// stream").
//
// Everything the machine touches from the outside is injected (EventSource
// constructor, fetch, clock), so tests/js/connection.test.mjs drives it with
// fakes and a fake clock.

export const STATES = Object.freeze({
  CONNECTING: 'connecting',
  LIVE: 'live',
  RECONNECTING: 'reconnecting',
  POLLING: 'polling',
  OFFLINE: 'offline',
});

/** Event types the server sends on /stream (DESIGN.md, "The stream"). */
export const EVENT_TYPES = Object.freeze([
  'init',
  'session-created',
  'session-updated',
  'session-deleted',
  'refresh',
  'keepalive',
]);

export const DEFAULT_OPTIONS = Object.freeze({
  streamUrl: 'stream',
  allUrl: 'all',
  // Delay before each reconnect attempt; its length is the number of attempts
  // made before falling back to polling.
  backoffMs: [1000, 2000, 4000, 8000, 16000],
  // How often /all is polled once SSE has been given up on.
  pollMs: 3000,
  // How often SSE is tried again in the background while polling.
  sseRetryMs: 15000,
  // An EventSource that has not opened after this long counts as failed (a
  // proxy that holds the request open without answering).
  connectTimeoutMs: 10000,
  // Nothing received, not even a keepalive, for this long: the connection is
  // dead even if the socket says otherwise. 2.5 × the server's default 30 s
  // keepalive.
  silenceMs: 75000,
  // A /all request that takes longer than this counts as failed.
  requestTimeoutMs: 10000,
});

const defaultClock = {
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle),
  now: () => Date.now(),
};

/**
 * Add `last_event_id=<id>` to a URL that may already have a query string.
 *
 *   withLastEventId('stream', 41)          → 'stream?last_event_id=41'
 *   withLastEventId('stream?token=t', 41)  → 'stream?token=t&last_event_id=41'
 */
export function withLastEventId(url, id) {
  if (id === null || id === undefined || id === '') return url;
  const sep = url.includes('?') ? '&' : '?';
  return `${url}${sep}last_event_id=${encodeURIComponent(String(id))}`;
}

/**
 * Connection to a sessionwatch server.
 *
 * Callbacks:
 *   onState({state, attempt, maxAttempts, retryInMs})  whenever the state or attempt changes
 *   onMessage({type, sessions, timestamp, id})          every stream event but keepalive
 *   onSnapshot({sessions, lastEventId, timestamp})      a successful /all while polling:
 *                                                       replace the whole table
 *   onAuthRequired()                                    /all answered 401; the machine stops
 *
 *   const conn = new Connection({onState, onMessage, onSnapshot});
 *   conn.start();
 */
export class Connection {
  constructor({
    EventSource = globalThis.EventSource,
    fetch = globalThis.fetch?.bind(globalThis),
    clock = defaultClock,
    onState = () => {},
    onMessage = () => {},
    onSnapshot = () => {},
    onAuthRequired = () => {},
    ...options
  } = {}) {
    this.options = { ...DEFAULT_OPTIONS, ...options };
    this._EventSource = EventSource;
    this._fetch = fetch;
    this._clock = clock;
    this._onState = onState;
    this._onMessage = onMessage;
    this._onSnapshot = onSnapshot;
    this._onAuthRequired = onAuthRequired;

    this._state = null;
    this._es = null;
    this._attempt = 0; // reconnect attempts made since the last open
    this._fallback = false; // polling /all, SSE retried in the background
    this._lastEventId = null;
    this._stopped = true;
    // Bumped whenever a poll's answer must no longer be applied (SSE opened,
    // stop()): a late /all must not overwrite fresher events.
    this._generation = 0;
    this._timers = { retry: null, poll: null, connect: null, silence: null };
    this._retryInMs = null;
  }

  get state() {
    return this._state;
  }

  /** The id of the last event applied, or null; sent as last_event_id on reconnect. */
  get lastEventId() {
    return this._lastEventId;
  }

  get attempt() {
    return this._attempt;
  }

  start() {
    if (!this._stopped) return;
    this._stopped = false;
    this._attempt = 0;
    this._fallback = false;
    this._setState(STATES.CONNECTING);
    this._open();
  }

  stop() {
    this._stopped = true;
    this._generation += 1;
    this._closeEventSource();
    for (const name of Object.keys(this._timers)) this._clear(name);
  }

  /**
   * Try SSE now instead of waiting for the next scheduled attempt (the
   * browser came back online, the user clicked the indicator).
   */
  retryNow() {
    if (this._stopped || this._state === STATES.LIVE || this._es) return;
    this._clear('retry');
    this._open();
  }

  // --- SSE ---------------------------------------------------------------

  _open() {
    this._clear('retry');
    this._retryInMs = null;
    const url = withLastEventId(this.options.streamUrl, this._lastEventId);
    let es;
    try {
      es = new this._EventSource(url, { withCredentials: true });
    } catch {
      this._failed(null);
      return;
    }
    this._es = es;
    es.onopen = () => this._opened(es);
    es.onerror = () => this._failed(es);
    for (const type of EVENT_TYPES) {
      es.addEventListener(type, (event) => this._received(es, type, event));
    }
    this._arm('connect', this.options.connectTimeoutMs, () => this._failed(es));
  }

  _opened(es) {
    if (es !== this._es || this._stopped) return;
    this._clear('connect');
    this._clear('poll');
    this._clear('retry');
    this._generation += 1; // a poll in flight must not overwrite the stream
    this._attempt = 0;
    this._fallback = false;
    this._armSilence(es);
    this._setState(STATES.LIVE);
  }

  _received(es, type, event) {
    if (es !== this._es || this._stopped) return;
    if (this._state !== STATES.LIVE) this._opened(es); // data proves the stream is open
    this._armSilence(es);
    if (type === 'keepalive') return;
    let payload;
    try {
      payload = JSON.parse(event.data);
    } catch {
      return; // a garbled event is skipped, the stream goes on
    }
    const id = event.lastEventId;
    if (id !== undefined && id !== null && id !== '') this._lastEventId = id;
    this._onMessage({
      type,
      sessions: Array.isArray(payload?.sessions) ? payload.sessions : [],
      timestamp: payload?.timestamp ?? null,
      id: id || null,
    });
  }

  _failed(es) {
    if (this._stopped || (es !== null && es !== this._es)) return;
    this._closeEventSource();
    this._clear('connect');
    this._clear('silence');

    if (this._fallback) {
      // A background retry failed; polling goes on.
      this._scheduleOpen(this.options.sseRetryMs);
      return;
    }
    const { backoffMs } = this.options;
    if (this._attempt < backoffMs.length) {
      const delay = backoffMs[this._attempt];
      this._attempt += 1;
      this._retryInMs = delay;
      this._setState(STATES.RECONNECTING, true);
      this._scheduleOpen(delay);
      return;
    }
    // Out of attempts: poll /all, keep trying SSE in the background.
    this._fallback = true;
    this._retryInMs = this.options.sseRetryMs;
    this._scheduleOpen(this.options.sseRetryMs);
    this._poll();
  }

  _scheduleOpen(delay) {
    this._arm('retry', delay, () => this._open());
  }

  _armSilence(es) {
    this._arm('silence', this.options.silenceMs, () => this._failed(es));
  }

  _closeEventSource() {
    const es = this._es;
    this._es = null;
    if (es) {
      es.onopen = null;
      es.onerror = null;
      try {
        es.close();
      } catch {
        // closing a broken EventSource must not break the machine
      }
    }
  }

  // --- polling -------------------------------------------------------------

  async _poll() {
    this._clear('poll');
    if (this._stopped || !this._fallback) return;
    const generation = this._generation;
    const outcome = await this._fetchAll();
    if (this._stopped || generation !== this._generation || !this._fallback) return;

    if (outcome.kind === 'auth') {
      this.stop();
      this._setState(STATES.OFFLINE);
      this._onAuthRequired();
      return;
    }
    if (outcome.kind === 'ok') {
      const body = outcome.body;
      const cameBack = this._state === STATES.OFFLINE;
      if (body.last_event_id !== undefined && body.last_event_id !== null) {
        this._lastEventId = String(body.last_event_id);
      }
      this._onSnapshot({
        sessions: Array.isArray(body.sessions) ? body.sessions : [],
        lastEventId: this._lastEventId,
        timestamp: body.timestamp ?? null,
      });
      this._setState(STATES.POLLING);
      // The server answers again after an outage: it is likely back for SSE
      // too, so try now rather than at the next background retry.
      if (cameBack && !this._es) this.retryNow();
    } else {
      this._setState(STATES.OFFLINE);
    }
    if (this._fallback && !this._stopped) {
      this._arm('poll', this.options.pollMs, () => this._poll());
    }
  }

  async _fetchAll() {
    const controller = typeof AbortController === 'function' ? new AbortController() : null;
    const timer = this._clock.setTimeout(() => controller?.abort(), this.options.requestTimeoutMs);
    try {
      const response = await this._fetch(this.options.allUrl, {
        headers: { Accept: 'application/json' },
        cache: 'no-store',
        credentials: 'same-origin',
        signal: controller?.signal,
      });
      if (response.status === 401) return { kind: 'auth' };
      if (!response.ok) return { kind: 'error' };
      const body = await response.json();
      if (!body || typeof body !== 'object') return { kind: 'error' };
      return { kind: 'ok', body };
    } catch {
      return { kind: 'error' };
    } finally {
      this._clock.clearTimeout(timer);
    }
  }

  // --- helpers -------------------------------------------------------------

  _arm(name, ms, fn) {
    this._clear(name);
    this._timers[name] = this._clock.setTimeout(() => {
      this._timers[name] = null;
      fn();
    }, ms);
  }

  _clear(name) {
    if (this._timers[name] !== null) {
      this._clock.clearTimeout(this._timers[name]);
      this._timers[name] = null;
    }
  }

  _setState(state, force = false) {
    if (state === this._state && !force) return;
    this._state = state;
    this._onState({
      state,
      attempt: this._attempt,
      maxAttempts: this.options.backoffMs.length,
      retryInMs: this._retryInMs,
    });
  }
}
